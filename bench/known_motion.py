"""Model-free check of the known motion of a "shapes v2" clip (``bench.shapes_v2``).

A v2 reference comes with its ground truth: the camera's transform per frame and the
shapes' paths. These functions read the same two motions from any decoded clip
(intensity ``[F, H, W]`` in 0..1, latent pixels, pixel centres at +0.5) without a model,
and compare them with that ground truth. Plain numpy; ``bench.quality_v3`` uses them.

Camera: block matching (``bench.motion_estimate.block_motion``) on a grid of cells gives
one displacement per cell and frame step; a similarity transform (scale, rotation,
shift) is fitted to them by weighted least squares. Cells covered by a white shape get
less weight (the shapes move on their own), and after a first fit the cells that
disagree with it most are dropped. The fitted and the true step transforms are both
evaluated at a fixed grid of points; the score is the mean cosine of the two
displacement fields (``displacement_agreement``: 1 = the same camera motion, about 0 =
unrelated or still) and their mean endpoint error in latent pixels per frame step.

Shapes: shapes are white (1) and the background texture at most 0.5, so the bright
pixels are the shapes. As many centres as the reference has shapes (one or two) follow
them by weighted k-means, frame after frame; each track is paired with the true path it
stays closest to, and the score is the mean step cosine (frame-to-frame steps
compared as in ``displacement_agreement``). Frames without foreground keep the last
position (no motion seen).
"""

from __future__ import annotations

import itertools

import numpy as np

from bench.motion_estimate import block_motion, displacement_agreement

FOREGROUND = 0.55      # intensity above which a pixel is (partly) shape: texture <= 0.5, shapes 1
STILL_PX = 0.1         # per-step motion below this reads as "still" in the cosines
CAMERA_CELLS = (4, 4)
MAX_SHIFT = 3          # largest step motion block matching looks for, latent pixels


def step_transforms(camera) -> np.ndarray:
    """Ground-truth camera ``[F, 2, 3]`` (scene -> frame f, as in ``bench.shapes_v2``) ->
    the step transforms ``[F-1, 2, 3]`` that map frame f's pixels to frame f+1's."""
    cam = np.asarray(camera, dtype=np.float64)
    a, t = cam[:, :, :2], cam[:, :, 2]
    step_a = a[1:] @ np.linalg.inv(a[:-1])
    step_t = t[1:] - (step_a @ t[:-1, :, None])[..., 0]
    return np.concatenate([step_a, step_t[..., None]], -1)


def displacements(steps: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacement ``[S, P, 2]`` of ``points`` ``[P, 2]`` (x, y) under each step ``[S, 2, 3]``."""
    moved = points[None] @ steps[:, :, :2].transpose(0, 2, 1) + steps[:, None, :, 2]
    return moved - points[None]


def cell_centres(size: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Centres ``[rows * cols, 2]`` (x, y) of the block-matching cells, row-major."""
    (h, w), (rows, cols) = size, cells
    ys, xs = (np.arange(rows) + 0.5) * (h // rows), (np.arange(cols) + 0.5) * (w // cols)
    return np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)


def fit_similarity(points: np.ndarray, disp: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares similarity per step: ``points`` ``[P, 2]``, ``disp`` ``[S, P, 2]``,
    ``weights`` ``[S, P]`` -> ``[S, 2, 3]`` with p + d ~ [[a, -b], [b, a]] p + t."""
    x, y = points[:, 0], points[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])     # [2P, 4]
    target = np.concatenate([x + disp[..., 0], y + disp[..., 1]], 1)                           # [S, 2P]
    w = np.concatenate([weights, weights], 1)[..., None]                                      # [S, 2P, 1]
    lhs = (rows[None] * w).transpose(0, 2, 1) @ rows[None] + 1e-6 * np.eye(4)
    rhs = ((rows[None] * w).transpose(0, 2, 1) @ target[..., None])[..., 0]
    a, b, tx, ty = np.moveaxis(np.linalg.solve(lhs, rhs[..., None])[..., 0], -1, 0)
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], -2)


def estimate_camera(intensity, cells: tuple[int, int] = CAMERA_CELLS, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Camera step transforms ``[F-1, 2, 3]`` read from a clip ``[F, H, W]`` (see the module
    docstring): block matching per cell, shape-covered cells down-weighted, a similarity
    fit, then a refit without the cells whose residual exceeds max(0.5 px, 2.5x the median)."""
    clip = np.asarray(intensity, dtype=np.float64)
    f, h, w = clip.shape
    rows, cols = cells
    field = block_motion(clip[:, None], cells, max_shift=max_shift).reshape(f - 1, rows * cols, 2)
    fg = (clip[:, :rows * (h // rows), :cols * (w // cols)] > FOREGROUND)
    cover = fg.reshape(f, rows, h // rows, cols, w // cols).mean((2, 4)).reshape(f, -1)
    weights = (np.maximum(cover[:-1], cover[1:]) < 0.02) + 1e-3
    points = cell_centres((h, w), cells)
    steps = fit_similarity(points, field, weights)
    resid = np.linalg.norm(displacements(steps, points) - field, axis=-1)
    limit = np.maximum(0.5, 2.5 * np.median(resid, axis=1, keepdims=True))
    return fit_similarity(points, field, weights * (resid <= limit))


def camera_score(intensity, camera, grid: int = 4) -> dict:
    """The clip's camera motion against a known camera ``[F, 2, 3]``: cosine and endpoint
    error (latent px per step) of the two displacement fields on a ``grid`` x ``grid`` grid."""
    clip = np.asarray(intensity, dtype=np.float64)
    points = cell_centres(clip.shape[1:], (grid, grid))
    est = displacements(estimate_camera(clip), points)
    true = displacements(step_transforms(camera), points)
    return {"camera_cos": displacement_agreement(est, true, still_px=STILL_PX),
            "camera_epe_px": float(np.linalg.norm(est - true, axis=-1).mean())}


def foreground_weights(intensity) -> np.ndarray:
    """How much of each pixel is shape ``[F, H, W]``: 0 at or below ``FOREGROUND``, 1 at white."""
    clip = np.asarray(intensity, dtype=np.float64)
    return np.clip((clip - FOREGROUND) / (1.0 - FOREGROUND), 0.0, 1.0)


def _lloyd(points: np.ndarray, wgt: np.ndarray, centres: np.ndarray, iters: int) -> np.ndarray:
    """Weighted k-means on one frame: ``points`` ``[P, 2]``, ``wgt`` ``[P]``, ``centres`` ``[K, 2]``.
    A centre that gets no weight stays where it was."""
    for _ in range(iters):
        near = np.argmin(((points[:, None] - centres[None]) ** 2).sum(-1), axis=1)          # [P]
        member = (near[None] == np.arange(len(centres))[:, None]) * wgt[None]               # [K, P]
        mass = member.sum(1)
        centres = np.where(mass[:, None] > 1e-9, member @ points / np.maximum(mass, 1e-9)[:, None], centres)
    return centres


def foreground_tracks(intensity, count: int) -> tuple[np.ndarray, float]:
    """Paths ``[count, F, 2]`` (x, y) of ``count`` shapes read from the bright pixels, and the
    share of frames that show any: weighted k-means per frame, each frame started from the
    previous frame's centres (the first from the centroid, split along the principal axis).
    A frame without foreground keeps the previous centres (no motion seen)."""
    wgt = foreground_weights(intensity)
    f, h, w = wgt.shape
    c = np.arange(max(h, w)) + 0.5
    points = np.stack(np.meshgrid(c[:w], c[:h], indexing="xy"), -1).reshape(-1, 2)
    flat = wgt.reshape(f, -1)
    seen = flat.sum(1) >= 1.0
    first = int(np.argmax(seen)) if seen.any() else 0
    m = flat[first] / max(flat[first].sum(), 1e-9)
    mean = m @ points if seen.any() else np.array([w / 2, h / 2])
    cov = (points - mean).T @ ((points - mean) * m[:, None])
    val, vec = np.linalg.eigh(cov + 1e-6 * np.eye(2))
    centres = mean + np.linspace(-1, 1, count)[:, None] * np.sqrt(val[-1]) * vec[:, -1]
    tracks = np.empty((count, f, 2))
    for t in range(f):   # frames, each started from the last; not a loop over pixels
        if seen[t]:
            centres = _lloyd(points, flat[t], centres, iters=8 if t == first else 3)
        tracks[:, t] = centres
    tracks[:, :first] = tracks[:, first:first + 1]
    return tracks, float(seen.mean())


def shape_score(intensity, paths, radii, present) -> dict:
    """The clip's shape motion against the known shape paths ``[K, F, 2]`` (``present`` ``[K]``):
    as many tracks as the reference has shapes, each paired with the true path it stays
    closest to (mean distance over the clip; not the pairing that agrees best, which would
    credit any clip with one of two motions); mean step cosine, mean step endpoint error
    (latent px per step) and the share of frames with a visible shape."""
    true = np.asarray(paths, dtype=np.float64)[np.asarray(present, dtype=bool)]
    est, seen = foreground_tracks(intensity, len(true))
    orders = [list(o) for o in itertools.permutations(range(len(true)))]   # one or two shapes: <= 2 pairings
    order = min(orders, key=lambda o: np.linalg.norm(est[o] - true, axis=-1).mean())
    d_est, d_true = np.diff(est[order], axis=1), np.diff(true, axis=1)
    return {"shape_cos": displacement_agreement(d_est, d_true, still_px=STILL_PX),
            "shape_step_epe_px": float(np.linalg.norm(d_est - d_true, axis=-1).mean()), "shape_seen": seen}
