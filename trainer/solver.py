"""Optimizers and warm-up schedules: maskrcnn-benchmark's step decay, detectron2's cosine decay."""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11; annotations only, so 3.10 imports this module too

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode


def make_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """No weight decay on norm and bias parameters: decaying them only hurts a model trained from scratch."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.SOLVER.WEIGHT_DECAY},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.SOLVER.OPTIMIZER == "AdamW":
        return torch.optim.AdamW(groups, lr=cfg.SOLVER.BASE_LR)
    return torch.optim.SGD(groups, lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM)


class WarmupArgs(TypedDict, total=False):
    """The warm-up keywords every schedule takes, declared once so the schedules only add their decay's."""

    warmup_factor: float
    warmup_iters: int
    warmup_method: str
    last_epoch: int


class _WarmupLR(LRScheduler):
    """Linear (or constant) warm-up from ``warmup_factor`` x lr, times the subclass's decay."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_factor: float = 1.0 / 3,
        warmup_iters: int = 500,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def decay(self, it: int) -> float:
        raise NotImplementedError

    def factor(self, it: int) -> float:
        warmup = 1.0
        if it < self.warmup_iters:
            if self.warmup_method == "constant":
                warmup = self.warmup_factor
            else:
                alpha = it / max(1, self.warmup_iters)
                warmup = self.warmup_factor * (1 - alpha) + alpha
        return warmup * self.decay(it)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]


class WarmupMultiStepLR(_WarmupLR):
    """x ``gamma`` at each milestone, after the warm-up."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: tuple[int, ...],
        gamma: float = 0.1,
        **warmup: Unpack[WarmupArgs],
    ) -> None:
        self.milestones = list(milestones)
        self.gamma = gamma
        super().__init__(optimizer, **warmup)

    def decay(self, it: int) -> float:
        return self.gamma ** bisect_right(self.milestones, it)


class WarmupCosineLR(_WarmupLR):
    """A half cosine from the base lr to 0 at ``max_iters``: no milestones to tune when the run is short."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        **warmup: Unpack[WarmupArgs],
    ) -> None:
        self.max_iters = max_iters
        super().__init__(optimizer, **warmup)

    def decay(self, it: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(it, self.max_iters) / max(1, self.max_iters)))


def _warmup_args(cfg: CfgNode) -> WarmupArgs:
    return WarmupArgs(
        warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
        warmup_iters=cfg.SOLVER.WARMUP_ITERS,
        warmup_method=cfg.SOLVER.WARMUP_METHOD,
    )


def make_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> _WarmupLR:
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupCosineLR":
        return WarmupCosineLR(optimizer, cfg.SOLVER.MAX_ITER, **_warmup_args(cfg))
    return WarmupMultiStepLR(optimizer, tuple(cfg.SOLVER.STEPS), cfg.SOLVER.GAMMA, **_warmup_args(cfg))
