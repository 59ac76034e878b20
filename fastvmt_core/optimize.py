"""Skip-step latent optimizer: AdamW on the latent only, with gradient reuse.

The loss and its gradient are evaluated only on inner steps ``j % interval == 0``;
the steps in between reuse the cached gradient, so the optimizer still steps
(with its own moment updates) at the cost of no model pass. ``interval=1`` is a
plain AdamW loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class OptimizeStats:
    gradient_evaluations: int = 0
    losses: list[float] = field(default_factory=list)  # loss at each evaluation, in order
    loss_parts: list[dict] = field(default_factory=list)  # optional components per evaluation
    evaluated_steps: list[int] = field(default_factory=list)
    steps_taken: int = 0
    wall_time: float = 0.0
    stopped_early: bool = False
    stop_reason: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def linear_lr(step: int, steps: int, lr_start: float, lr_end: float) -> float:
    if steps <= 1:
        return lr_start
    return lr_start + (lr_end - lr_start) * step / (steps - 1)


def released_lr(step: int, steps: int, lr_start: float, lr_end: float) -> float:
    """The released code's schedule, ``lr_start - (lr_start - lr_end) * step / steps``: it never
    reaches lr_end (0.0021 at the last of 10 steps)."""
    if steps <= 0:
        return lr_start
    return lr_start - (lr_start - lr_end) * step / steps


def optimize_latent(x: torch.Tensor, loss_fn: Callable, *, steps: int = 10, interval: int = 3,
                    lr_start: float = 0.003, lr_end: float = 0.002, weight_decay: float = 0.01,
                    on_step: Callable[[int, OptimizeStats, torch.Tensor], None] | None = None,
                    lr_schedule: Callable[[int, int, float, float], float] = linear_lr,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, OptimizeStats]:
    """Optimise ``x`` to lower ``loss_fn(x)``; returns a detached float32 latent and stats.

    ``dtype``: of the AdamW parameter and its state (the released code's is bf16, so small
    updates of large entries round away). The returned latent is ``x`` plus the parameter's
    change, so a zero learning rate returns ``x`` exactly whatever the dtype.

    ``loss_fn`` takes the latent (requires grad) and returns a scalar tensor, or a
    ``(tensor, dict)`` pair whose dict is recorded per evaluation. ``on_step(j, stats, latent)``
    runs after every inner step with the current latent: callers report progress there and may raise to
    abort (an interrupt). A non-finite loss or gradient stops the loop and keeps the
    last finite latent; the returned latent is never NaN.
    """
    if steps < 0 or interval < 1:
        raise ValueError(f"steps must be >= 0 and interval >= 1 (got steps={steps}, interval={interval})")
    stats = OptimizeStats()
    start = time.perf_counter()
    start_param = x.detach().to(dtype)
    param = start_param.clone().requires_grad_(True)
    opt = torch.optim.AdamW([param], lr=lr_start, weight_decay=weight_decay)
    cached_grad = None
    for j in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_schedule(j, steps, lr_start, lr_end)
        if j % interval == 0:
            with torch.enable_grad():
                out = loss_fn(param)
                loss, parts = out if isinstance(out, tuple) else (out, None)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    stats.stopped_early, stats.stop_reason = True, f"non-finite loss at inner step {j}"
                    break
                (grad,) = torch.autograd.grad(loss, param)
            stats.gradient_evaluations += 1
            stats.losses.append(loss_value)
            stats.evaluated_steps.append(j)
            if parts is not None:
                stats.loss_parts.append(parts)
            if not bool(torch.isfinite(grad).all()):
                stats.stopped_early, stats.stop_reason = True, f"non-finite gradient at inner step {j}"
                break
            cached_grad = grad
        last_good = param.detach().clone()
        param.grad = cached_grad.clone()
        opt.step()
        if not bool(torch.isfinite(param).all()):
            with torch.no_grad():
                param.copy_(last_good)
            stats.stopped_early, stats.stop_reason = True, f"non-finite latent after inner step {j}"
            break
        stats.steps_taken = j + 1
        if on_step is not None:
            on_step(j, stats, param.detach())
    stats.wall_time = time.perf_counter() - start
    if dtype == torch.float32:
        return param.detach(), stats
    return x.detach().float() + (param.detach() - start_param).float(), stats
