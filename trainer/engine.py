"""The training loop: iteration-based, resumable, single process or ``torchrun`` (DDP, gloo on the CPU)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from tqdm import tqdm
from yacs.config import CfgNode

from .checkpoint import last_checkpoint, load_checkpoint_file, load_model_weights, save_checkpoint
from .config import ConfigError
from .datasets import COCODetection, build_dataset, build_train_loader
from .evaluation import evaluate_model, summarize
from .model import build_model, configure_transform
from .solver import make_optimizer, make_scheduler

logger = logging.getLogger("trainer")


class DistInfo(NamedTuple):
    """Where this process stands in a ``torchrun`` job; the defaults are a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group ``torchrun`` set up, if any (gloo on the CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return info


def resolve_device(cfg: CfgNode, info: DistInfo) -> torch.device:
    device = cfg.MODEL.DEVICE
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("MODEL.DEVICE is 'cuda' but no CUDA GPU is available; use MODEL.DEVICE cpu")
        if info.world_size > 1:
            torch.cuda.set_device(info.local_rank)
            return torch.device("cuda", info.local_rank)
    return torch.device(device)


FORCE_FP32_ENV = "MRD_FORCE_FP32"


def force_fp32_requested() -> bool:
    """Whether ``MRD_FORCE_FP32`` asks for float32 training ("1", "true", "yes", "on"; "0"/"" do not)."""
    value = os.environ.get(FORCE_FP32_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{FORCE_FP32_ENV}={os.environ[FORCE_FP32_ENV]!r}: use 1 (force float32) or 0")


def autocast_dtype(enabled: bool, device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for training on ``device``, or None for plain float32.

    On the CPU only native bf16 math pays: oneDNN emulates bf16 without AVX512-BF16 or AMX, which is slower
    than float32. With it, the small shapes config trains about 1.8x faster (measured, 2 cores).
    ``MRD_FORCE_FP32=1`` in the environment (or ``SOLVER.AMP False``) forces float32 anywhere, so the speed
    of a machine without bf16 can be measured on one that has it.
    """
    if not enabled or force_fp32_requested():
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class MetricsWriter:
    """JSON lines always; TensorBoard too when it is installed."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self.tb: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output_dir / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"iteration": iteration, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, iteration)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _reduce_losses(losses: dict[str, torch.Tensor], info: DistInfo) -> dict[str, float]:
    names = sorted(losses)
    values = torch.stack([losses[k].detach().float() for k in names])
    if info.world_size > 1:
        dist.all_reduce(values)
        values /= info.world_size
    return {k: float(v) for k, v in zip(names, values)}


@dataclass
class _Run:
    """What one training run holds, built once by ``_setup`` and shared by the step and the hooks."""

    cfg: CfgNode
    info: DistInfo
    device: torch.device
    out: Path
    dataset: COCODetection
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    loader: DataLoader
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    writer: MetricsWriter
    start_iter: int
    config_yaml: str
    t_start: float = 0.0
    test_datasets: list[COCODetection] | None = None

    @property
    def max_iter(self) -> int:
        return self.cfg.SOLVER.MAX_ITER


def train(
    cfg: CfgNode,
    resume: bool = True,
    skip_class_heads: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    allow_solver_change: bool = False,
) -> Path:
    """Train ``cfg`` and return the path of the final checkpoint.

    ``stop_after`` ends the run after that many iterations *of this process* without writing the final
    checkpoint: what a kill looks like, for resume tests.
    """
    run = _setup(cfg, resume, skip_class_heads, allow_solver_change)
    bar = _progress_bar(run, progress)
    run.ddp_model.train()
    iteration = run.start_iter
    run.t_start = time.perf_counter()
    for images, targets in run.loader:
        losses = _train_step(run, images, targets, iteration)
        iteration += 1
        _log_step(run, bar, losses, iteration)
        _run_periodic_hooks(run, iteration)
        if stop_after is not None and iteration - run.start_iter >= stop_after:
            bar.close()
            run.writer.close()
            return run.out / "interrupted"
    bar.close()
    return _finish(run, iteration)


def _setup(cfg: CfgNode, resume: bool, skip_class_heads: bool, allow_solver_change: bool = False) -> _Run:
    """Everything before the first step, in an order that keeps seeded runs (and resumes) reproducible."""
    info = init_distributed(cfg.MODEL.DEVICE)
    device = resolve_device(cfg, info)
    out = _prepare_output_dir(cfg, info)
    seed_everything(cfg.SOLVER.SEED + info.rank)
    dataset = _train_dataset(cfg)
    model = _train_model(cfg, device)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    start_iter = _restore_state(
        cfg, out, model, optimizer, scheduler, resume, skip_class_heads, info, allow_solver_change
    )
    ddp_model = _wrap_distributed(model, device, info)
    loader = _train_loader(cfg, dataset, start_iter, info)
    amp_dtype, scaler = _mixed_precision(cfg, device, info)
    writer = MetricsWriter(out, info.is_main)
    return _Run(
        cfg, info, device, out, dataset, model, ddp_model, optimizer, scheduler, loader,
        amp_dtype, scaler, writer, start_iter, cfg.dump(),
    )  # fmt: skip


def _prepare_output_dir(cfg: CfgNode, info: DistInfo) -> Path:
    """Create OUTPUT_DIR and save the config there, so a run's directory says how it was made."""
    out = Path(cfg.OUTPUT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        (out / "config.yaml").write_text(cfg.dump())
    return out


def _train_dataset(cfg: CfgNode) -> COCODetection:
    """The one DATASETS.TRAIN dataset, checked against NUM_CLASSES before any time goes into training."""
    datasets = [
        build_dataset(n, cfg.DATASETS.ROOT, train=True, flip_prob=cfg.INPUT.HORIZONTAL_FLIP_PROB_TRAIN)
        for n in cfg.DATASETS.TRAIN
    ]
    if len(datasets) != 1:
        raise ValueError("training on several datasets at once is not supported yet; give one DATASETS.TRAIN")
    num_names = len(datasets[0].class_names)
    if num_names > cfg.MODEL.ROI_HEADS.NUM_CLASSES:
        raise ValueError(
            f"dataset {cfg.DATASETS.TRAIN[0]} has category ids up to {num_names - 1}, so "
            f"MODEL.ROI_HEADS.NUM_CLASSES must be at least {num_names} (it is {cfg.MODEL.ROI_HEADS.NUM_CLASSES})"
        )
    return datasets[0]


def _train_model(cfg: CfgNode, device: torch.device) -> nn.Module:
    model = build_model(cfg, train=True).to(device)
    if device.type == "cpu":
        # oneDNN's convolutions (forward and backward) are faster on NHWC tensors; the math is the same
        model = model.to(memory_format=torch.channels_last)
    return model


def _restore_state(
    cfg: CfgNode,
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    resume: bool,
    skip_class_heads: bool,
    info: DistInfo,
    allow_solver_change: bool = False,
) -> int:
    """Continue from the last checkpoint in ``out`` if asked and there is one, else start from MODEL.WEIGHT.

    Returns the iteration to start at.
    """
    resume_from = last_checkpoint(out) if resume else None
    if resume_from is not None:
        start_iter = _resume(resume_from, cfg, model, optimizer, scheduler, allow_solver_change)
        if info.is_main:
            logger.warning(
                "resumed from %s at iteration %d (--no-resume starts over)", resume_from, start_iter
            )
        return start_iter
    if cfg.MODEL.WEIGHT:
        from .loading import load_weights_into, read_weights

        load_weights_into(model, cfg, read_weights(cfg.MODEL.WEIGHT)["model"], skip_class_heads)
        if info.is_main:
            logger.info("initialized from %s", cfg.MODEL.WEIGHT)
    return 0


def solver_changes(saved_yaml: str, cfg: CfgNode) -> list[str]:
    """``SOLVER.KEY: saved -> now`` for every SOLVER key the checkpoint's config has another value of."""
    from .config import config_from_yaml_text

    saved = config_from_yaml_text(saved_yaml).SOLVER
    return [
        f"SOLVER.{key}: {saved[key]!r} -> {cfg.SOLVER[key]!r}"
        for key in sorted(cfg.SOLVER)
        if key in saved and saved[key] != cfg.SOLVER[key]
    ]


def _resume(
    path: Path,
    cfg: CfgNode,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    allow_solver_change: bool = False,
) -> int:
    """Load model, optimizer and scheduler state so the run goes on with the same momentum and lr.

    A schedule changed since the checkpoint (other SOLVER values) is refused unless ``allow_solver_change``:
    the scheduler's state would silently keep the old one, or mix the two.
    """
    ckpt = load_checkpoint_file(path)
    if ckpt.get("config") and not allow_solver_change:
        changed = solver_changes(str(ckpt["config"]), cfg)
        if changed:
            raise ConfigError(
                f"{path} was trained with other settings ({'; '.join(changed)}): resume with the same ones, train "
                "into another OUTPUT_DIR, start over with --no-resume, or keep the change with --allow-solver-change"
            )
    load_model_weights(model, ckpt["model"])
    if ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
    return int(ckpt.get("iteration", 0))


def _wrap_distributed(model: nn.Module, device: torch.device, info: DistInfo) -> nn.Module:
    """DDP under torchrun; the bare model otherwise (checkpoints always save the bare one)."""
    if info.world_size <= 1:
        return model
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[info.local_rank] if device.type == "cuda" else None
    )


def _train_loader(cfg: CfgNode, dataset: COCODetection, start_iter: int, info: DistInfo) -> DataLoader:
    return build_train_loader(
        dataset,
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.DATALOADER.NUM_WORKERS,
        cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        seed=cfg.SOLVER.SEED,
        start_iter=start_iter,
        max_iter=cfg.SOLVER.MAX_ITER,
        rank=info.rank,
        world_size=info.world_size,
    )


def _mixed_precision(
    cfg: CfgNode, device: torch.device, info: DistInfo
) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """The autocast type (None: float32) and the gradient scaler that goes with it."""
    amp_dtype = autocast_dtype(bool(cfg.SOLVER.AMP), device)
    # bf16 has float32's range: only float16 needs loss scaling
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if info.is_main and amp_dtype is not None:
        logger.info("mixed precision: %s autocast on %s", amp_dtype, device.type)
    return amp_dtype, scaler


def _progress_bar(run: _Run, progress: bool) -> tqdm:
    return tqdm(
        total=run.max_iter,
        initial=run.start_iter,
        desc="train",
        unit="it",
        disable=not (progress and run.info.is_main),
        dynamic_ncols=True,
    )


def _train_step(
    run: _Run, images: list[torch.Tensor], targets: list[dict], iteration: int
) -> dict[str, torch.Tensor]:
    """One forward, backward and optimizer step; returns the loss terms for logging."""
    images = [im.to(run.device, non_blocking=True) for im in images]
    targets = [{k: v.to(run.device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    autocast = (
        torch.autocast(run.device.type, dtype=run.amp_dtype) if run.amp_dtype is not None else nullcontext()
    )
    with autocast:
        losses = run.ddp_model(images, targets)
    loss = sum(losses.values())
    _check_finite(loss, losses, iteration)
    _optimizer_step(run, loss)
    return losses


def _check_finite(loss: torch.Tensor, losses: dict[str, torch.Tensor], iteration: int) -> None:
    """Stop at the first NaN or inf: every step after it would only spread it through the weights."""
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(
            f"loss became {float(loss)} at iteration {iteration}: { ({k: float(v) for k, v in losses.items()}) }; "
            "lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS"
        )


def _optimizer_step(run: _Run, loss: torch.Tensor) -> None:
    """Backward through the scaler, clip if SOLVER.CLIP_GRAD_NORM asks, step the optimizer and the lr."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.cfg.SOLVER.CLIP_GRAD_NORM > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.SOLVER.CLIP_GRAD_NORM)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()


def _log_step(run: _Run, bar: tqdm, losses: dict[str, torch.Tensor], iteration: int) -> None:
    """Progress bar every step; a metrics line every 20 steps and at the last (every rank joins the reduce)."""
    logged = _reduce_losses(losses, run.info)
    logged["loss"] = sum(logged.values())
    logged["lr"] = run.optimizer.param_groups[0]["lr"]
    bar.update(1)
    bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{logged['lr']:.4f}")
    if iteration % 20 == 0 or iteration == run.max_iter:
        run.writer.write(iteration, {**logged, "elapsed_s": time.perf_counter() - run.t_start})


def _due(period: int, iteration: int, max_iter: int) -> bool:
    """A periodic hook fires every ``period`` iterations (0 disables it), except at the end, which _finish does."""
    return period > 0 and iteration % period == 0 and iteration < max_iter


def _run_periodic_hooks(run: _Run, iteration: int) -> None:
    """Intermediate checkpoints (SOLVER.CHECKPOINT_PERIOD) and evaluations (SOLVER.TEST_PERIOD)."""
    if _due(run.cfg.SOLVER.CHECKPOINT_PERIOD, iteration, run.max_iter):
        _save(run, f"model_{iteration:07d}", iteration)
    if _due(run.cfg.SOLVER.TEST_PERIOD, iteration, run.max_iter):
        run.test_datasets = run.test_datasets or [
            build_dataset(n, run.cfg.DATASETS.ROOT, train=False) for n in run.cfg.DATASETS.TEST
        ]
        _periodic_eval(run.model, run.cfg, run.test_datasets, run.device, run.info, run.writer, iteration)


def _save(run: _Run, name: str, iteration: int) -> Path | None:
    """Rank 0 writes the checkpoint (the ranks' weights are the same); the others get None."""
    if not run.info.is_main:
        return None
    return save_checkpoint(
        run.out,
        name,
        run.model,
        run.optimizer,
        run.scheduler,
        iteration,
        run.config_yaml,
        list(run.dataset.class_names),
        run.dataset.keypoint_names,
    )


def _finish(run: _Run, iteration: int) -> Path:
    """The final checkpoint, once every rank is done, and the path of it."""
    final = _save(run, "model_final", iteration)
    if run.info.world_size > 1:
        dist.barrier()
    run.writer.close()
    if run.info.is_main:
        logger.info(
            "training done: %d iterations in %.1f s",
            iteration - run.start_iter,
            time.perf_counter() - run.t_start,
        )
    return final if final is not None else run.out / "model_final.pth"


def _periodic_eval(
    model: nn.Module,
    cfg: CfgNode,
    datasets: list[COCODetection],
    device: torch.device,
    info: DistInfo,
    writer: MetricsWriter,
    iteration: int,
) -> None:
    """Evaluate on rank 0 while the others wait: evaluation on the shapes data takes seconds."""
    if info.is_main:
        configure_transform(model, cfg, train=False)
        for name, ds in zip(cfg.DATASETS.TEST, datasets):
            result = evaluate_model(model, cfg, ds, device=device, progress=False)
            flat = summarize(result)
            writer.write(iteration, {f"{name}/{k}": v for k, v in flat.items()})
            logger.info("iteration %d %s: %s", iteration, name, flat)
        configure_transform(model, cfg, train=True)
        model.train()
    if info.world_size > 1:
        dist.barrier()
