"""The reference's own motion, read from its latent without the model.

``block_motion`` estimates the motion of a multi-channel clip such as a latent by block
matching (also the quality benchmark's measuring stick, ``bench.motion_estimate``).
``reference_motion`` turns it into the two numbers the motion controls' run summary
reports: the reference's camera motion (the robust affine fit of camera_motion.py) and
its object motion. Read from the latent, they do not share the attention flow's bias: on
a featureless background the flow drifts toward each window's centre, which an affine fit
reads as a zoom even when nothing moves.
"""

from __future__ import annotations

import numpy as np
import torch

from .camera_motion import fit_camera

CELL = 4             # block-matching cell side, latent pixels (after halving latents larger than WORK_SIZE)
MAX_SHIFT = 4
WORK_SIZE = 32       # latents are averaged 2x2 until neither side exceeds this (speed: 480p x 81 takes about 1 s)
FLAT = 0.01          # a cell with under 1% of the frame's mean texture carries no motion: read as still
OBJECT_QUANTILE = 0.95


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


def cell_texture(clip: np.ndarray, cells: tuple[int, int]) -> np.ndarray:
    """Mean over channels of each cell's spatial variance: [F, C, H, W] -> [F, rows, cols]."""
    f, c, h, w = clip.shape
    rows, cols = cells
    x = clip[:, :, :rows * (h // rows), :cols * (w // cols)].reshape(f, c, rows, h // rows, cols, w // cols)
    return x.var(axis=(3, 5)).mean(axis=1)


def reference_motion(latent: torch.Tensor, region: torch.Tensor | None = None) -> tuple[float, float]:
    """(camera, objects) motion of a latent clip [1, C, F, H, W], latent pixels per latent frame:
    camera = RMS of the fitted global motion over the cells, objects = the 95th percentile of
    what the fit leaves. ``region`` [F, h, w] (token weights) limits both to the region.
    Cells without texture count as still (no motion can be seen there). (0, 0) for one frame."""
    x = latent[0].detach().float().cpu().transpose(0, 1).numpy().astype(np.float64)  # [F, C, H, W]
    if x.shape[0] < 2:
        return 0.0, 0.0
    scale = 1
    while max(x.shape[2:]) > WORK_SIZE:
        f, c, h, w = x.shape
        x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(f, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        scale *= 2
    cells = (max(2, x.shape[2] // CELL), max(2, x.shape[3] // CELL))
    field = block_motion(x, cells, MAX_SHIFT) * scale  # [F-1, rows, cols, 2] (dx, dy)
    texture = cell_texture(x[:-1], cells)
    flat = texture < FLAT * texture.mean(axis=(1, 2), keepdims=True) + 1e-12
    field[flat] = 0.0
    yx = torch.from_numpy(np.ascontiguousarray(field[..., ::-1]))
    prior = None
    if region is not None:
        prior = torch.nn.functional.adaptive_avg_pool2d(region[:-1, None].double().cpu(), cells)[:, 0]
    fit = fit_camera(yx, prior)
    residual = (yx - fit.field).norm(dim=-1)
    weights = torch.ones_like(residual) if prior is None else prior
    camera = fit.field.pow(2).sum(-1)
    camera_rms = float(((weights * camera).sum(dim=(1, 2)) / weights.sum(dim=(1, 2)).clamp(min=1e-12)).sqrt().mean())
    counted = residual[weights > 0]
    objects = float(torch.quantile(counted, OBJECT_QUANTILE)) if counted.numel() else 0.0
    return camera_rms, objects
