"""Reduced precision chosen by accuracy: which parts of the network stay FP32, measured on the user's data.

The parts are :func:`calibration.precision_regions.named_parts` (each backbone stage, FPN level and head).

1. **Sensitivity**, on calibration images: each part alone is reduced (every other part FP32) and its
   detections are compared with the FP32 model's (agreement AP50, PyTorch-style matching of
   ``runtime.compare``). A part's cost is what it loses alone.
2. **Search**, on held-out images (never the calibration ones): plans keep the k most costly parts FP32,
   k = 0, 1, 2, ...; each is scored with COCO AP against the FP32 model on the same images. The first plans
   within ``max_ap_drop`` (every IoU type) fit; among them INT8 takes the lowest measured p50 (ONNX Runtime,
   timed alternately with FP32 in one run), FP16 the fewest FP32 parts (it is for TensorRT: CPUs run FP16
   at FP32's speed).
3. The chosen plan goes into the model's metadata (``precision_plan``: the FP32 parts, the measured drop,
   the sensitivity), and ``--fp32-parts`` rebuilds the same model from it. When no plan fits,
   :class:`PlanNotFound` carries the best one found.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: plans scored per COCO evaluation (one FP32 reference run each)
PLANS_PER_ROUND = 3
#: p50s this close to the fastest fitting plan's are a tie (as in the deployment report)
TIE_FRACTION = 0.05


@dataclass
class PartCost:
    part: str
    compute_nodes: int
    agreement_ap: float  # the part alone reduced, against FP32, on the calibration images

    @property
    def cost(self) -> float:
        return 1.0 - self.agreement_ap

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartCost:
        return cls(str(d["part"]), int(d["compute_nodes"]), float(d["agreement_ap"]))


@dataclass
class PlanResult:
    fp32_parts: list[str]
    ap_delta: dict[str, float]  # held-out AP minus FP32's, points
    p50_ms: float | None = None

    def worst(self) -> float:
        return min(self.ap_delta.values()) if self.ap_delta else float("-inf")


@dataclass
class PrecisionPlan:
    precision: str
    fp32_parts: list[str]
    max_ap_drop: float
    ap_delta: dict[str, float]
    p50_ms: float | None
    fp32_p50_ms: float | None
    sensitivity: list[dict[str, Any]]
    tried: list[dict[str, Any]]
    held_out: str
    calibration: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class PlanNotFound(Exception):
    """No plan keeps AP within the limit; ``best`` is the closest found."""

    def __init__(self, best: PrecisionPlan) -> None:
        self.best = best
        super().__init__(
            f"no precision plan keeps AP within {best.max_ap_drop:g} points on {best.held_out}; the best found keeps "
            f"{', '.join(best.fp32_parts) or 'nothing'} FP32 and drops "
            + ", ".join(f"{t} {d:+.2f}" for t, d in best.ap_delta.items())
        )


@dataclass
class SearchInputs:
    """What a search needs besides the FP32 model: the precision, the limit, the two image sets."""

    precision: str  # "int8" or "fp16"
    max_ap_drop: float
    ann_file: Path
    img_dir: Path
    held_out: str  # how the held-out data set is named in the plan
    sensitivity_images: list[Path]  # calibration images the sensitivity is measured on
    calib: Any = None  # calibration.image_source.CalibrationImages (INT8)
    calib_cache: Path | None = None
    max_images: int | None = 100
    #: at most this many parts kept FP32 (None: every candidate; all but one where every part is a candidate,
    #: since every part FP32 is the FP32 model)
    max_fp32_parts: int | None = None
    #: the parts the plan may keep FP32 (None: all); the others are always reduced
    candidate_parts: Sequence[str] | None = None
    bench_iters: int = 15  # timed iterations per fitting INT8 plan (and FP32), alternately
    #: the sensitivity measured before (a plan's ``sensitivity``, e.g. from :func:`recorded_plan`): searching
    #: again with another limit need not measure it again
    sensitivity: Sequence[PartCost] | None = None
    threads: int | None = None
    progress: bool = True
    say: Callable[[str], None] = field(default=print)


def build_with_parts(
    precision: str, fp32_onnx: Path, output: Path, fp32_parts: Sequence[str], inputs: SearchInputs
) -> Path:
    """The FP16 or INT8 model of ``fp32_onnx`` keeping exactly ``fp32_parts`` FP32 (the exporter's own
    conversion, quietly: a search builds dozens)."""
    from exporter.pipeline import Int8Options, onnx_of_precision

    calib = Int8Options(inputs.calib, cache=inputs.calib_cache) if precision == "int8" else None
    built, _ = onnx_of_precision(fp32_onnx, output, precision, calib, False, list(fp32_parts))
    return built


def recorded_plan(model_path: Path) -> dict[str, Any] | None:
    """The precision plan a model records (``precision``, ``fp32_parts``, ...), or None."""
    import onnx

    from runtime.onnx_contract import META_PRECISION_PLAN, metadata_props

    text = metadata_props(onnx.load(str(model_path), load_external_data=False)).get(META_PRECISION_PLAN)
    return None if text is None else dict(json.loads(text))


def model_parts(fp32_onnx: Path) -> dict[str, int]:
    """part -> its number of conv/matmul nodes, in graph order."""
    import onnx

    from calibration.precision_regions import find_regions, named_parts

    model = onnx.load(str(fp32_onnx), load_external_data=False)
    regions = find_regions(model)
    return {name: len(nodes & regions.compute) for name, nodes in named_parts(model, regions).items()}


def measure_sensitivity(
    fp32_onnx: Path, parts: Sequence[str], counts: dict[str, int], inputs: SearchInputs, work: Path
) -> list[PartCost]:
    """Each of ``parts`` reduced alone (every other part of the model FP32: ``counts``, from
    :func:`model_parts`), against the FP32 model, on the sensitivity images."""
    from tqdm import tqdm

    from runtime.compare import compare_detections
    from runtime.image_io import read_image
    from runtime.predictor import Predictor

    images = [read_image(p) for p in inputs.sensitivity_images]

    def raws(path: Path) -> list[Any]:
        with Predictor(path, confidence_threshold=0.0, threads=inputs.threads) as pred:
            return [raw for image in images for raw in pred.run([image], paste_masks=False).raw]

    reference = raws(fp32_onnx)
    costs = []
    for part in tqdm(parts, desc="sensitivity", unit="part", disable=not inputs.progress):
        others = [p for p in counts if p != part]
        variant = build_with_parts(inputs.precision, fp32_onnx, work / f"only_{part}.onnx", others, inputs)
        report = compare_detections(reference, raws(variant))
        costs.append(PartCost(part, counts[part], float(report.agreement_ap or 0.0)))
        variant.unlink()
    return costs


def format_sensitivity(costs: Sequence[PartCost]) -> str:
    from runtime.text_table import format_text_table

    rows = [[c.part, str(c.compute_nodes), f"{c.agreement_ap:.4f}", f"{c.cost:.4f}"]
            for c in sorted(costs, key=lambda c: -c.cost)]  # fmt: skip
    return format_text_table(
        ["part (reduced alone)", "conv/matmul", "agreement AP50 with FP32", "cost"], rows
    )


def _score(fp32_onnx: Path, plans: list[Path], inputs: SearchInputs) -> list[dict[str, float]]:
    """Held-out AP deltas of each plan's model against the FP32 model."""
    from runtime.evaluate import evaluate_models_against_reference
    from runtime.predictor import Predictor

    kwargs: dict[str, Any] = {"confidence_threshold": 0.0, "threads": inputs.threads}
    reference = Predictor(fp32_onnx, **kwargs)
    models = [Predictor(p, **kwargs) for p in plans]
    try:
        reports = evaluate_models_against_reference(models, reference, inputs.ann_file, inputs.img_dir,
                                                    inputs.max_images, progress=inputs.progress)  # fmt: skip
    finally:
        for m in [reference, *models]:
            m.close()
    return [r.ap_deltas() for r in reports]


def _p50s(fp32_onnx: Path, models: list[Path], inputs: SearchInputs) -> list[float]:
    """p50 (ms, batch 1, end to end) of FP32 and each model, alternately in one run."""
    from runtime.bench import BenchSettings, run_benchmark
    from runtime.image_io import read_image

    pictures = [read_image(p) for p in inputs.sensitivity_images[:8]]
    settings = BenchSettings(batch=1, warmup=2, iters=inputs.bench_iters, threads=inputs.threads, floor=False)
    report = run_benchmark([fp32_onnx, *models], pictures, settings, progress=inputs.progress)
    return [m.summary(1)["p50_ms"] if m.error is None else float("inf") for m in report.models]


def search_plan(fp32_onnx: Path, output: Path, inputs: SearchInputs) -> PrecisionPlan:
    """Measure, search, and write the chosen model to ``output`` (its plan in the metadata); raises
    :class:`PlanNotFound` (after writing nothing) when no plan fits."""
    import onnx

    from calibration.precision_regions import check_part_names
    from exporter.surgery import save_onnx_atomic
    from runtime.onnx_contract import META_PRECISION_PLAN, update_metadata_props

    counts = model_parts(fp32_onnx)
    parts = list(counts)
    if inputs.candidate_parts is not None:
        wanted = check_part_names(parts, inputs.candidate_parts)
        parts = [p for p in parts if p in wanted]
    with tempfile.TemporaryDirectory(prefix="mrd-plan-") as tmp:
        work = Path(tmp)
        costs = (
            list(inputs.sensitivity)
            if inputs.sensitivity
            else measure_sensitivity(fp32_onnx, parts, counts, inputs, work)
        )
        if sorted(c.part for c in costs) != sorted(parts):
            raise ValueError("the sensitivity given is of another model: its parts differ from this one's")
        inputs.say(f"sensitivity of each part ({inputs.precision} alone, on {len(inputs.sensitivity_images)} "
                   f"calibration images):\n{format_sensitivity(costs)}")  # fmt: skip
        order = [c.part for c in sorted(costs, key=lambda c: -c.cost)]
        tried: list[PlanResult] = []
        fitting: list[tuple[PlanResult, Path]] = []
        # keeping every part of the model FP32 is the FP32 model itself, not a plan; keeping every candidate
        # (fewer than all parts) is one
        most = len(order) - 1 if len(order) == len(counts) else len(order)
        last = most if inputs.max_fp32_parts is None else min(inputs.max_fp32_parts, most)
        for start in range(0, last + 1, PLANS_PER_ROUND):
            ks = list(range(start, min(start + PLANS_PER_ROUND, last + 1)))
            paths = [build_with_parts(inputs.precision, fp32_onnx, work / f"plan_{k}.onnx", order[:k], inputs)
                     for k in ks]  # fmt: skip
            for k, path, deltas in zip(ks, paths, _score(fp32_onnx, paths, inputs)):
                result = PlanResult(order[:k], deltas)
                tried.append(result)
                inputs.say(f"  FP32 {', '.join(result.fp32_parts) or '(nothing)'}: "
                           + ", ".join(f"{t} {d:+.2f}" for t, d in deltas.items()))  # fmt: skip
                if -result.worst() <= inputs.max_ap_drop + 1e-9:
                    fitting.append((result, path))
            if fitting:
                break
        fp32_p50 = None
        if fitting and inputs.precision == "int8":
            p50s = _p50s(fp32_onnx, [p for _, p in fitting], inputs)
            fp32_p50 = p50s[0]
            for (result, _), p50 in zip(fitting, p50s[1:]):
                result.p50_ms = p50
            # p50s within TIE_FRACTION of the fastest are a tie (timing noise), which the fewest FP32 parts win
            fastest = min(r.p50_ms or float("inf") for r, _ in fitting)
            tied = [rp for rp in fitting if (rp[0].p50_ms or float("inf")) <= fastest * (1 + TIE_FRACTION)]
            chosen, chosen_path = min(tied, key=lambda rp: (len(rp[0].fp32_parts), rp[0].p50_ms or 0.0))
        elif fitting:
            chosen, chosen_path = min(fitting, key=lambda rp: len(rp[0].fp32_parts))
        else:
            chosen, chosen_path = max(tried, key=lambda r: r.worst()), None
        plan = PrecisionPlan(
            inputs.precision, chosen.fp32_parts, inputs.max_ap_drop, chosen.ap_delta, chosen.p50_ms, fp32_p50,
            [asdict(c) | {"cost": c.cost} for c in costs], [asdict(r) for r in tried], inputs.held_out,
            getattr(inputs.calib, "source", "") or str(inputs.calib_cache or ""),
        )  # fmt: skip
        if chosen_path is None:
            raise PlanNotFound(plan)
        model = onnx.load(str(chosen_path))
        update_metadata_props(model, {META_PRECISION_PLAN: plan.to_json()})
        output.parent.mkdir(parents=True, exist_ok=True)
        save_onnx_atomic(model, output)
    return plan
