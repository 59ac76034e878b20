"""Model-free motion estimates for the quality benchmark (plain numpy).

``block_motion`` reads the motion of a multi-channel clip such as a latent by block
matching; ``displacement_agreement`` compares two displacement fields. They measure
benchmark results; the method itself (``fastvmt_core``) does not use them.
"""

from __future__ import annotations

import numpy as np


def block_motion(clip, cells: tuple[int, int] = (1, 1), max_shift: int = 3) -> np.ndarray:
    """Motion of a multi-channel clip ``[F, C, H, W]`` (e.g. a video latent), estimated
    independently of any model by block matching: for each pair of consecutive frames
    and each cell of a ``cells`` = (rows, cols) grid, the integer shift within
    ``max_shift`` pixels that maximises the zero-mean normalised cross-correlation of the
    cell with the next frame (all channels together; pixels shifted in from outside the
    frame are ignored), refined to sub-pixel by a parabola per axis.

    Returns displacements ``[F-1, rows, cols, 2]`` as (dx, dy) in pixels, the way the
    content moved from frame t to t+1. Works on noisy latents, where point tracking has
    nothing to hold on to: noise drawn independently per frame adds no consistent peak."""
    x = np.asarray(clip, dtype=np.float64)
    if x.ndim != 4 or x.shape[0] < 2:
        raise ValueError(f"clip: expected [F >= 2, C, H, W], got shape {x.shape}")
    rows, cols = (int(c) for c in cells)
    f, c, h, w = x.shape
    ch, cw, r = h // rows, w // cols, int(max_shift)
    if ch < 2 or cw < 2 or r < 1:
        raise ValueError(f"cells {cells} / max_shift {max_shift}: need cells of at least 2x2 pixels and max_shift >= 1")
    x = x - x.mean(axis=(1, 2, 3), keepdims=True)
    a, b = x[:-1], x[1:]
    nan = np.full((f - 1, c, h + 2 * r, w + 2 * r), np.nan)
    nan[:, :, r:r + h, r:r + w] = b
    n = 2 * r + 1
    scores = np.empty((n, n, f - 1, rows, cols))
    for i in range(n):          # (2r+1)^2 whole-array shifts, not a loop over pixels
        for j in range(n):
            bs = nan[:, :, i:i + h, j:j + w]
            ok = np.isfinite(bs)
            av, bv = np.where(ok, a, 0.0), np.where(ok, bs, 0.0)

            def cell_sum(v):
                return v[:, :, :rows * ch, :cols * cw].reshape(f - 1, c, rows, ch, cols, cw).sum(axis=(1, 3, 5))
            cnt = np.maximum(cell_sum(ok.astype(np.float64)), 1.0)
            ma, mb = cell_sum(av) / cnt, cell_sum(bv) / cnt
            cov = cell_sum(av * bv) / cnt - ma * mb
            va = cell_sum(av * av) / cnt - ma ** 2
            vb = cell_sum(bv * bv) / cnt - mb ** 2
            scores[i, j] = cov / np.sqrt(np.maximum(va * vb, 1e-24))
    flat = scores.reshape(n * n, -1).argmax(0)
    iy, ix = np.unravel_index(flat, (n, n))
    s = scores.reshape(n, n, -1)
    col = np.arange(s.shape[-1])

    def vertex(lo, mid, hi):
        den = lo - 2 * mid + hi
        return np.where(den < 0, 0.5 * (lo - hi) / np.where(den < 0, den, -1.0), 0.0).clip(-0.5, 0.5)
    dy = np.where((iy > 0) & (iy < n - 1), vertex(s[np.clip(iy - 1, 0, n - 1), ix, col], s[iy, ix, col],
                                                  s[np.clip(iy + 1, 0, n - 1), ix, col]), 0.0)
    dx = np.where((ix > 0) & (ix < n - 1), vertex(s[iy, np.clip(ix - 1, 0, n - 1), col], s[iy, ix, col],
                                                  s[iy, np.clip(ix + 1, 0, n - 1), col]), 0.0)
    out = np.stack([ix - r + dx, iy - r + dy], axis=-1)
    return out.reshape(f - 1, rows, cols, 2)


def displacement_agreement(a, b, still_px: float = 0.2) -> float:
    """Mean cosine similarity of two displacement fields of one shape (``[..., 2]``), each
    vector compared as (dx, dy, still_px) as in ``fastvmt_core.fidelity.tracklet_correlation``: 1 for the
    same motion, about 0 for unrelated motion, near -1 for opposite motion."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1] != 2:
        raise ValueError(f"displacement fields must have one shape [..., 2], got {a.shape} and {b.shape}")

    def unit(d):
        v = np.concatenate([d, np.full(d.shape[:-1] + (1,), float(still_px))], axis=-1)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)
    return float((unit(a) * unit(b)).sum(-1).mean())
