"""The two guidance losses and their weighted sum.

* ``amf_loss`` (paper eq. 5-6): squared L2 distance between the reference and the
  generated displacements, pairs weighted by a linear decay over frame offsets
  (1.0 at offset 1 down to ``1 - alpha`` at the largest offset), averaged over
  tokens and normalised by the number of pairs. The reference side is detached.
* ``window_loss`` (appendix B.4): for one source frame and one tile, the
  window-mean keys in consecutive target frames should change smoothly; the loss
  is the mean L2 norm (not squared) of their first-order differences, in float32.
"""

from __future__ import annotations

import torch

from .amf import MotionFlow


def offset_weights(offsets: torch.Tensor, alpha: float = 0.2) -> torch.Tensor:
    """Linear decay 1.0 -> 1 - alpha from the smallest to the largest frame offset present."""
    offsets = offsets.float()
    if offsets.numel() == 0:
        return offsets
    lo, hi = offsets.min(), offsets.max()
    if hi == lo:
        return torch.ones_like(offsets)
    return 1.0 - alpha * (offsets - lo) / (hi - lo)


def amf_loss(ref: MotionFlow, gen: MotionFlow, *, alpha: float = 0.2,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """``weights`` [P, H, W] (a region, motion_controls.py): each pair's squared error is
    their weighted mean instead of the plain mean over tokens; a pair of zero weight adds 0."""
    if ref.pairs.shape != gen.pairs.shape or not torch.equal(ref.pairs.cpu(), gen.pairs.cpu()):
        raise ValueError("reference and generated motion flows cover different frame pairs "
                         f"({ref.pairs.shape[0]} vs {gen.pairs.shape[0]}); extract both with the same settings")
    if ref.displacement.shape != gen.displacement.shape:
        raise ValueError(f"reference and generated token grids differ: {tuple(ref.displacement.shape)} vs "
                         f"{tuple(gen.displacement.shape)}")
    n_pairs = gen.pairs.shape[0]
    if n_pairs == 0:
        return gen.displacement.sum() * 0.0
    diff = gen.displacement.float() - ref.displacement.detach().float()
    sq = diff.pow(2).sum(dim=-1)
    if weights is None:
        per_pair = sq.mean(dim=(1, 2))  # [P]
    else:
        wts = weights.to(device=sq.device, dtype=sq.dtype)
        per_pair = (wts * sq).sum(dim=(1, 2)) / wts.sum(dim=(1, 2)).clamp(min=1e-12)
    pair_weights = offset_weights(gen.offsets, alpha).to(per_pair.device)
    return (pair_weights * per_pair).sum() / n_pairs


def window_loss(gen: MotionFlow, tile_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L2 norm of window-mean key differences between consecutive target frames.

    Zero when the flow has no window keys (global AMF) or no source frame has two
    consecutive targets. ``tile_weights`` [F, tiles] (a region, motion_controls.py): a
    weighted mean, each tile weighted by its share of the region in the source frame.
    """
    wk = gen.window_keys
    if wk is None or wk.shape[0] == 0:
        return gen.displacement.sum() * 0.0
    f = gen.grid[0]
    pairs = gen.pairs.to(wk.device)
    # Dense (i, j) -> pair row table, so "(i, j) and (i, j + 1) both present" is a vectorised lookup.
    table = torch.full((f, f + 1), -1, dtype=torch.long, device=wk.device)
    table[pairs[:, 0], pairs[:, 1]] = torch.arange(pairs.shape[0], device=wk.device)
    nxt = table[pairs[:, 0], pairs[:, 1] + 1]
    has_next = nxt >= 0
    if not bool(has_next.any()):
        return gen.displacement.sum() * 0.0
    wk = wk.float()
    delta = wk[nxt[has_next]] - wk[has_next]  # [Q, T, D]
    if tile_weights is None:
        return delta.norm(dim=-1).mean()
    wts = tile_weights.to(device=wk.device, dtype=wk.dtype)[pairs[has_next, 0]]  # [Q, T]
    return (wts * delta.norm(dim=-1)).sum() / wts.sum().clamp(min=1e-12)


def total_loss(ref: MotionFlow, gen: MotionFlow, *, lambda_amf: float = 5.0, lambda_window: float = 1.0,
               alpha: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_amf * amf_loss + lambda_window * window_loss, plus the parts as floats."""
    l_amf = amf_loss(ref, gen, alpha=alpha)
    l_win = window_loss(gen) if lambda_window != 0 else l_amf * 0.0
    total = lambda_amf * l_amf + lambda_window * l_win
    return total, {"amf": float(l_amf.detach()), "window": float(l_win.detach())}
