"""SGD with warm-up and step decay: maskrcnn-benchmark's schedule (WarmupMultiStepLR)."""

from __future__ import annotations

from bisect import bisect_right

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


class WarmupMultiStepLR(LRScheduler):
    """Linear (or constant) warm-up from ``warmup_factor`` x lr, then x ``gamma`` at each milestone."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: tuple[int, ...],
        gamma: float = 0.1,
        warmup_factor: float = 1.0 / 3,
        warmup_iters: int = 500,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def factor(self, it: int) -> float:
        warmup = 1.0
        if it < self.warmup_iters:
            if self.warmup_method == "constant":
                warmup = self.warmup_factor
            else:
                alpha = it / max(1, self.warmup_iters)
                warmup = self.warmup_factor * (1 - alpha) + alpha
        return warmup * self.gamma ** bisect_right(self.milestones, it)

    def get_lr(self) -> list[float]:
        f = self.factor(self.last_epoch)
        return [base * f for base in self.base_lrs]


def make_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> WarmupMultiStepLR:
    return WarmupMultiStepLR(
        optimizer,
        tuple(cfg.SOLVER.STEPS),
        cfg.SOLVER.GAMMA,
        cfg.SOLVER.WARMUP_FACTOR,
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.WARMUP_METHOD,
    )
