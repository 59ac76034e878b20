"""Guidance over frame windows (a long video sampled in overlapping windows of latent
frames): which windows can carry the flow, and the loss over them evaluated one window at
a time, so a gradient pass holds one window's activations, never the whole video's."""
from __future__ import annotations

from typing import Callable

import torch

FRAME_DIM = 2   # latent [B, C, F, H, W]


def window_problem(windows: list[list[int]], frames: int, temporal_span: int) -> str | None:
    """Why these windows cannot carry the motion flow (None when they can): a window that is
    not consecutive frames, one too short for a full span, frames no window covers, or an
    overlap smaller than the span (frame pairs across a seam would go unguided)."""
    if not windows:
        return "there are no windows"
    for w in windows:
        if any(b - a != 1 for a, b in zip(w, w[1:])):
            return (f"a window is not consecutive latent frames ({_show(w)}): the flow pairs frames by their "
                    "distance in time")
        if len(w) < temporal_span + 1:
            return (f"a window of {len(w)} latent frames is shorter than one temporal span plus one "
                    f"({temporal_span + 1})")
    covered = sorted({i for w in windows for i in w})
    if covered != list(range(frames)):
        return f"the windows cover latent frames {_show(covered)} of 0-{frames - 1}"
    by_start = sorted(windows, key=lambda w: w[0])
    for a, b in zip(by_start, by_start[1:]):
        overlap = a[-1] - b[0] + 1
        if b[0] > a[0] and b[-1] > a[-1] and overlap < temporal_span:
            return (f"windows {_show(a)} and {_show(b)} overlap by {max(overlap, 0)} latent frames, fewer than the "
                    f"temporal span ({temporal_span}): frame pairs across that seam would get no guidance")
    return None


def _show(frames: list[int]) -> str:
    if frames and frames == list(range(frames[0], frames[-1] + 1)):
        return f"{frames[0]}-{frames[-1]}"
    return ",".join(map(str, frames[:8])) + (",..." if len(frames) > 8 else "")


def windowed_loss(x: torch.Tensor, windows: list[list[int]],
                  loss_of_window: Callable[[torch.Tensor, int], tuple[torch.Tensor, dict]],
                  between: Callable[[], None] | None = None) -> tuple[torch.Tensor, dict]:
    """The mean over ``windows`` of ``loss_of_window(x[:, :, window], index)``, with its
    gradient with respect to ``x``, evaluated window by window (each window's backward runs
    before the next window's forward). ``between()`` runs before each window (an interrupt
    check). Returns (a scalar whose value is the mean loss and whose gradient is the mean
    of the windows' gradients, the windows' loss parts averaged)."""
    grad = torch.zeros_like(x, dtype=torch.float32)
    values, parts = [], {}
    base = x.detach()
    for index, frames in enumerate(windows):
        if between is not None:
            between()
        sub = base[:, :, frames].clone().requires_grad_(True)
        with torch.enable_grad():
            loss, p = loss_of_window(sub, index)
            (g,) = torch.autograd.grad(loss, sub)
        grad[:, :, frames] += g.float() / len(windows)
        values.append(float(loss.detach()))
        for key, v in (p or {}).items():
            parts[key] = parts.get(key, 0.0) + float(v) / len(windows)
    mean = sum(values) / len(values)
    # value: the mean loss; gradient with respect to x: ``grad`` (and on through x's graph)
    surrogate = (x * grad.to(x.dtype)).sum()
    return surrogate - surrogate.detach() + mean, parts
