"""Synthetic video clips with a known motion, for the model check's tests."""
from __future__ import annotations

import numpy as np


def texture_clip(frames: int, h: int, w: int, dx_per_frame: int) -> np.ndarray:
    """RGB uint8 frames of a high-contrast texture moving left by ``dx_per_frame`` pixels a frame."""
    import cv2
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((h + 40, w + frames * dx_per_frame + 40)).astype(np.float32), (0, 0), 2.0)
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 255).astype(np.uint8)
    return np.stack([np.repeat(tex[20:20 + h, 20 + t * dx_per_frame:20 + t * dx_per_frame + w, None], 3, -1)
                     for t in range(frames)])
