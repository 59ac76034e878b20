"""Smooth random textures that move by a known rule, in the Wan latent layout: level 1's
references (``bench.quality``) and the model check's references for models without a
clip of their own (``bench.check_model_refs``)."""

from __future__ import annotations

import torch

LEVEL1_MOTIONS = ("translation", "zoom", "apart")


def known_motion_latent(kind: str, frames: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Model-space latent ``[1, 16, F, H, W]``: a smooth random texture (unit variance)
    moving by a known rule. translation: (+2, +1) px per frame; zoom: x1.15 per frame about
    the centre; apart: the left half moves left, the right half right, 2 px per frame.
    (One latent frame step is four video frames, and a token is 2x2 latent pixels.)"""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 16, h // 2 + 12, w // 2 + 12, generator=g)
    base = torch.nn.functional.interpolate(base, scale_factor=4, mode="bicubic", align_corners=False)
    base = (base - base.mean()) / base.std()
    bh, bw = base.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) + 0.5
    cy, cx = h / 2, w / 2
    out = []
    for t in range(frames):  # a handful of frames, each warped as a whole
        if kind == "translation":
            sx, sy = xs - 2.0 * t, ys - 1.0 * t
        elif kind == "zoom":
            z = 1.15 ** t
            sx, sy = cx + (xs - cx) / z, cy + (ys - cy) / z
        elif kind == "apart":
            sx, sy = torch.where(xs < cx, xs + 2.0 * t, xs - 2.0 * t), ys
        else:
            raise ValueError(f"unknown motion {kind!r}; use one of {LEVEL1_MOTIONS}")
        # sample the texture's centre region at (sx, sy)
        gx = (sx + (bw - w) / 2) / bw * 2 - 1
        gy = (sy + (bh - h) / 2) / bh * 2 - 1
        grid = torch.stack([gx, gy], -1)[None]
        out.append(torch.nn.functional.grid_sample(base, grid, mode="bilinear", align_corners=False)[0])
    return torch.stack(out, 1)[None]
