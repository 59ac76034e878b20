"""Point tracks for the motion-fidelity metric: KLT (OpenCV's pyramidal Lucas-Kanade) from
corner seeds, forward-backward checked, and the time resampling of any tracker's tracks.
Positions are [points, frames, 2] (x, y) in pixels, NaN where a point is lost."""

from __future__ import annotations

import numpy as np

OPENCV_HINT = "pip install opencv-python-headless (or opencv-python)"


def import_cv2():
    """OpenCV, or an ImportError that says what to install."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"motion fidelity needs OpenCV ({exc}); {OPENCV_HINT}") from exc
    return cv2


def _grey_u8(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] float 0..1 -> [T, H, W] uint8 luma (BT.601 weights)."""
    luma = frames @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _seed_points(grey0: np.ndarray, max_tracks: int, min_distance: float, min_seeds: int):
    """Corner seeds of the first frame, plus a grid when there are too few corners."""
    cv2 = import_cv2()
    h, w = grey0.shape
    corners = cv2.goodFeaturesToTrack(grey0, maxCorners=int(max_tracks), qualityLevel=0.01,
                                      minDistance=float(min_distance), blockSize=7)
    pts = np.zeros((0, 2), np.float32) if corners is None else corners.reshape(-1, 2).astype(np.float32)
    n_grid = 0
    if len(pts) < min_seeds:
        step = max(float(min_distance), min(h, w) / 16.0, 1.0)
        ys = np.arange(step / 2, h - 0.5, step, dtype=np.float32)
        xs = np.arange(step / 2, w - 0.5, step, dtype=np.float32)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        if len(pts):
            near = np.min(np.linalg.norm(grid[:, None, :] - pts[None, :, :], axis=-1), axis=1) < min_distance
            grid = grid[~near]
        grid = grid[: max(0, int(max_tracks) - len(pts))]
        n_grid = len(grid)
        pts = np.concatenate([pts, grid.astype(np.float32)])
    return pts, n_grid


def track_points(grey: np.ndarray, seeds: np.ndarray, *, fb_threshold: float = 1.0, win_size: int = 21,
                 max_level: int = 3) -> np.ndarray:
    """Follow ``seeds`` ([N, 2] x, y in frame 0) through uint8 frames ``grey`` [T, H, W].

    Returns positions [N, T, 2] (x, y); NaN from the step a point is lost on (LK failure,
    forward-backward error above ``fb_threshold`` pixels, or leaving the frame)."""
    cv2 = import_cv2()
    t_count, h, w = grey.shape
    tracks = np.full((len(seeds), t_count, 2), np.nan, np.float32)
    tracks[:, 0] = seeds
    alive = np.arange(len(seeds))
    lk = dict(winSize=(int(win_size), int(win_size)), maxLevel=int(max_level),
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    for t in range(t_count - 1):
        if len(alive) == 0:
            break
        p0 = np.ascontiguousarray(tracks[alive, t].reshape(-1, 1, 2))
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t + 1], p0, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(grey[t + 1], grey[t], p1, None, **lk)
        p0, p1, back = p0.reshape(-1, 2), p1.reshape(-1, 2), back.reshape(-1, 2)
        fb = np.linalg.norm(back - p0, axis=1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & np.isfinite(p1).all(axis=1) & (fb < fb_threshold)
        ok &= (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        tracks[alive[ok], t + 1] = p1[ok]
        alive = alive[ok]
    return tracks


def track_clip(frames: np.ndarray, name: str, notes: list, *, max_tracks, min_distance, min_seeds, fb_threshold,
               win_size, max_level) -> np.ndarray:
    """KLT tracks of a clip [T, H, W, 3] from its first frame's corners (grid seeds added
    where corners are few, said in ``notes``)."""
    grey = _grey_u8(frames)
    seeds, n_grid = _seed_points(grey[0], max_tracks, min_distance, min_seeds)
    if n_grid:
        notes.append(f"{name}: only {len(seeds) - n_grid} corner features in the first frame; "
                     f"added {n_grid} grid seeds")
    return track_points(grey, seeds, fb_threshold=fb_threshold, win_size=win_size, max_level=max_level)


def resample_tracks(tracks: np.ndarray, frames_out: int) -> np.ndarray:
    """Positions [N, T, 2] -> [N, frames_out, 2] by linear interpolation in time
    (same start and end; NaN where either neighbour is lost)."""
    t_in = tracks.shape[1]
    if t_in == frames_out:
        return tracks
    s = np.linspace(0.0, t_in - 1, frames_out)
    s = np.where(np.abs(s - np.round(s)) < 1e-6, np.round(s), s)
    i0 = np.floor(s).astype(int)
    i1 = np.minimum(i0 + 1, t_in - 1)
    f = (s - i0).astype(np.float32)[None, :, None]
    a, b = tracks[:, i0], tracks[:, i1]
    with np.errstate(invalid="ignore"):
        mixed = (1.0 - f) * a + f * b
    return np.where(f == 0.0, a, mixed).astype(np.float32)
