"""The learning-rate schedules and the mixed-precision choice the training loop makes from the config."""

import math

import pytest
import torch
from torch import nn

from trainer.config import load_config
from trainer.engine import autocast_dtype
from trainer.solver import WarmupCosineLR, WarmupMultiStepLR, make_optimizer, make_scheduler


def _lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_multistep_warms_up_linearly_then_steps_down() -> None:
    lrs = _lrs(WarmupMultiStepLR(_optimizer(), (6, 8), 0.1, warmup_factor=0.5, warmup_iters=4), 10)
    assert lrs[:4] == pytest.approx([0.05, 0.0625, 0.075, 0.0875])
    assert lrs[4:6] == pytest.approx([0.1, 0.1])
    assert lrs[6:8] == pytest.approx([0.01, 0.01])
    assert lrs[8:] == pytest.approx([0.001, 0.001])


def test_cosine_decays_from_base_to_zero_at_max_iter() -> None:
    lrs = _lrs(WarmupCosineLR(_optimizer(), 100, warmup_factor=0.01, warmup_iters=10), 101)
    assert lrs[0] == pytest.approx(0.001)  # warm-up starts at warmup_factor x base
    assert lrs[50] == pytest.approx(0.05)  # half way: half the base lr
    assert lrs[25] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone after the warm-up


def test_config_picks_the_schedule_and_keeps_the_state_resumable() -> None:
    cfg = load_config(None, ["SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR", "SOLVER.MAX_ITER", "40"])
    model = nn.Linear(2, 2)
    sched = make_scheduler(cfg, make_optimizer(cfg, model))
    assert isinstance(sched, WarmupCosineLR) and sched.max_iters == 40
    for _ in range(17):
        sched.optimizer.step()
        sched.step()
    again = make_scheduler(cfg, make_optimizer(cfg, nn.Linear(2, 2)))
    again.load_state_dict(sched.state_dict())
    assert again.last_epoch == 17
    assert again.get_lr() == pytest.approx(sched.get_lr())
    multi = make_scheduler(load_config(None), make_optimizer(load_config(None), model))
    assert isinstance(multi, WarmupMultiStepLR)


def test_autocast_dtype_follows_device_and_cpu_features(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype(False, torch.device("cuda")) is None
    assert autocast_dtype(True, torch.device("cuda")) is torch.float16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert autocast_dtype(True, cpu) is None  # emulated bf16 is slower than float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert autocast_dtype(True, cpu) is torch.bfloat16
    assert autocast_dtype(False, cpu) is None


def test_force_fp32_environment_overrides_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv("MRD_FORCE_FP32", raising=False)
    assert autocast_dtype(True, cpu) is torch.bfloat16
    for value in ("1", "true", "ON"):
        monkeypatch.setenv("MRD_FORCE_FP32", value)
        assert autocast_dtype(True, cpu) is None
        assert autocast_dtype(True, torch.device("cuda")) is None
    monkeypatch.setenv("MRD_FORCE_FP32", "0")
    assert autocast_dtype(True, cpu) is torch.bfloat16
    monkeypatch.setenv("MRD_FORCE_FP32", "maybe")
    with pytest.raises(ValueError, match="MRD_FORCE_FP32='maybe'"):
        autocast_dtype(True, cpu)
