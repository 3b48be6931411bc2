"""The main job, timed per phase, for one or more training seeds: ``scripts/demo.sh`` run as it is.

The issue's target: the whole main job (setup aside) well inside 15 minutes on 2 cores of an AVX2 CPU without
native bf16, and the trained model at bbox AP >= 0.70 and segm AP >= 0.65 (AP@[.5:.95], shapes val,
``trainer eval``) for the worst of several seeds. ``--fp32`` forces float32 training (``MRD_FORCE_FP32=1``) so
a CPU with bf16 measures the no-bf16 case. Run it on an otherwise idle machine:

    python benchmarks/bench_train_shapes.py --seeds 0,1,2 --fp32 [--train-only] [KEY VALUE ...]

Each seed runs in a fresh ``OUTPUT/seed_N`` folder; the table lists every phase's wall time and the two APs,
and ``OUTPUT/bench_train.json`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"bbox": 0.70, "segm": 0.65}
PHASES = ("data", "training", "eval", "export", "bench", "evaluate", "total")


def run_seed(seed: int, output: Path, fp32: bool, train_only: bool, opts: list[str]) -> dict:
    """One run of the demo script; returns its phase times and the APs ``trainer eval`` wrote."""
    out = output / f"seed_{seed}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
    env = {**os.environ, "DEMO_SEED": str(seed), "DEMO_OUTPUT": str(out)}
    if fp32:
        env["MRD_FORCE_FP32"] = "1"
    if train_only:
        env["DEMO_STOP_AFTER"] = "eval"
    subprocess.run(["bash", str(REPO / "scripts" / "demo.sh"), *opts], cwd=REPO, env=env, check=True)
    seconds = json.loads((out / "timings.json").read_text())
    metrics = next(iter(json.loads((out / "eval.json").read_text()).values()))
    return {"seed": seed, "seconds": seconds, "AP": {t: metrics[f"{t}/AP"] for t in TARGETS}}


def format_table(runs: list[dict]) -> str:
    phases = [p for p in PHASES if any(p in r["seconds"] for r in runs)]
    head = f"{'seed':>4s} " + " ".join(f"{p:>9s}" for p in phases) + f" {'bbox AP':>8s} {'segm AP':>8s}"
    lines = [head, "-" * len(head)]
    for r in runs:
        cells = " ".join(f"{r['seconds'].get(p, float('nan')):8.1f}s" for p in phases)
        lines.append(f"{r['seed']:>4d} {cells} {r['AP']['bbox']:8.3f} {r['AP']['segm']:8.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    p.add_argument("--fp32", action="store_true", help="force float32 training (MRD_FORCE_FP32=1)")
    p.add_argument("--train-only", action="store_true", help="stop after training and trainer eval")
    p.add_argument("--output", type=Path, default=Path("output/bench_train_shapes"))
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    output = args.output if args.output.is_absolute() else REPO / args.output
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, float32 forced: {args.fp32}")
    runs = [run_seed(s, output, args.fp32, args.train_only, args.opts) for s in seeds]
    print("\n" + format_table(runs))
    ok = True
    for t, target in TARGETS.items():
        worst = min(r["AP"][t] for r in runs)
        ok &= worst >= target
        print(f"worst {t} AP = {worst:.3f} (target >= {target:.2f}: {'ok' if worst >= target else 'MISSED'})")
    output.mkdir(parents=True, exist_ok=True)
    (output / "bench_train.json").write_text(json.dumps({"fp32": args.fp32, "runs": runs}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
