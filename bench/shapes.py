"""Synthetic "moving shapes" videos for the level-2 quality benchmark.

One shape (circle, square or triangle) in white on black moves along a smooth random
path. Clips are rendered straight into the Wan latent layout ``[16, F, H, W]`` by a
fixed toy codec instead of a VAE: no Wan VAE weights exist here, the VAE plays no part
in motion transfer, and a random-weight VAE would not round-trip. The codec writes the
intensity ``2*I - 1`` into every channel with a fixed sign per channel (so all 16
channels carry the picture) and decodes by the sign-weighted channel mean.

Everything here is plain torch/numpy; ``bench.train_shapes`` and ``bench.quality`` use
the same functions, so training data and benchmark references cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

CLASSES = ("circle", "square", "triangle")
CHANNELS = 16
# Fixed channel signs of the toy codec (part of the trained model's contract).
CHANNEL_SIGNS = torch.tensor([1, -1, 1, 1, -1, 1, -1, -1, 1, -1, 1, 1, -1, -1, 1, -1], dtype=torch.float32)
PROMPT_TOKENS = 8


@dataclass(frozen=True)
class ClipSpec:
    frames: int = 8        # latent frames
    size: int = 16         # latent height = width
    radius: tuple = (2.6, 3.6)   # shape "radius" range in latent pixels
    travel: tuple = (4.0, 9.0)   # start-to-end distance range in latent pixels


def random_paths(gen: torch.Generator, batch: int, spec: ClipSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth paths ``[B, F, 2]`` (x, y in latent pixels) and radii ``[B]``: quadratic
    Bezier curves whose start, control and end points keep the shape inside the frame."""
    r = spec.radius[0] + (spec.radius[1] - spec.radius[0]) * torch.rand(batch, generator=gen)
    lo, hi = r + 0.5, spec.size - r - 0.5                                     # [B]
    def point():
        return lo[:, None] + (hi - lo)[:, None] * torch.rand(batch, 2, generator=gen)
    start = point()
    angle = 2 * math.pi * torch.rand(batch, generator=gen)
    dist = spec.travel[0] + (spec.travel[1] - spec.travel[0]) * torch.rand(batch, generator=gen)
    end = start + dist[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    end = torch.maximum(torch.minimum(end, hi[:, None]), lo[:, None])
    ctrl = 0.5 * (start + end) + 0.35 * dist[:, None] * torch.randn(batch, 2, generator=gen)
    ctrl = torch.maximum(torch.minimum(ctrl, hi[:, None]), lo[:, None])
    t = torch.linspace(0, 1, spec.frames)[None, :, None]
    paths = (1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * ctrl[:, None] + t ** 2 * end[:, None]
    return paths, r


def render(classes: torch.Tensor, paths: torch.Tensor, radii: torch.Tensor, size: int,
           supersample: int = 4) -> torch.Tensor:
    """Anti-aliased intensity clips ``[B, F, size, size]`` in 0..1 (area-averaged from a
    ``supersample``-times finer grid). Shapes are scaled to similar areas."""
    n = size * supersample
    c = (torch.arange(n, dtype=torch.float32, device=paths.device) + 0.5) / supersample
    dy = c[None, None, :, None] - paths[..., 1, None, None]
    dx = c[None, None, None, :] - paths[..., 0, None, None]
    r = radii[:, None, None, None]
    circle = dx ** 2 + dy ** 2 <= r ** 2
    square = torch.maximum(dx.abs(), dy.abs()) <= 0.886 * r          # same area as the circle
    s = 1.35 * r                                                      # equilateral, pointing up
    triangle = (dy <= 0.5 * s) & (math.sqrt(3) * dx - dy <= s) & (-math.sqrt(3) * dx - dy <= s)
    k = classes[:, None, None, None]
    inside = torch.where(k == 0, circle, torch.where(k == 1, square, triangle)).float()
    b, f = inside.shape[:2]
    return torch.nn.functional.avg_pool2d(inside.view(b * f, 1, n, n), supersample).view(b, f, size, size)


def encode(intensity: torch.Tensor) -> torch.Tensor:
    """Intensity ``[B, F, H, W]`` in 0..1 -> model-space latent ``[B, 16, F, H, W]``."""
    return CHANNEL_SIGNS.to(intensity)[None, :, None, None, None] * (2 * intensity[:, None] - 1)


def decode(latent: torch.Tensor) -> torch.Tensor:
    """Model-space latent ``[B, 16, F, H, W]`` -> intensity ``[B, F, H, W]`` in 0..1."""
    signs = CHANNEL_SIGNS.to(latent)[None, :, None, None, None]
    return ((signs * latent).mean(1) + 1).mul(0.5).clamp(0, 1)


def to_frames(intensity: torch.Tensor, scale: int = 8) -> np.ndarray:
    """One clip's intensity ``[F, H, W]`` -> RGB frames ``[F, H*scale, W*scale, 3]`` in 0..1
    (bilinear upsampling, as a VAE decoder's 8x would give), for the fidelity metric."""
    up = torch.nn.functional.interpolate(intensity[:, None].float(), scale_factor=scale, mode="bilinear",
                                         align_corners=False)
    return up.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()


def classify(intensity: torch.Tensor, threshold: float = 0.5) -> tuple[str, float]:
    """Which shape a clip ``[F, H, W]`` shows, from the median fill ratio (area over
    bounding-box area) of the thresholded 8x-upsampled frames: a square fills its box
    (~1.0), a circle ~0.79, a triangle ~0.5. Returns (class or "none", fill ratio)."""
    up = torch.nn.functional.interpolate(intensity[:, None].float(), scale_factor=8, mode="bilinear",
                                         align_corners=False)[:, 0] > threshold
    ratios = []
    for mask in up:  # per frame (a handful), not per pixel
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if ys.numel() < 16:
            continue
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        ratios.append(float(mask.sum()) / float(box))
    if len(ratios) < max(1, intensity.shape[0] // 2):
        return "none", 0.0
    fill = float(np.median(ratios))
    return ("triangle" if fill < 0.64 else "circle" if fill < 0.89 else "square"), fill


def centroid_path(intensity: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centroid per frame ``[F, 2]`` (x, y in latent pixels)."""
    f, h, w = intensity.shape
    wgt = intensity.clamp(min=0) + 1e-8
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    tot = wgt.sum((1, 2))
    return torch.stack([(wgt * xs).sum((1, 2)) / tot, (wgt * ys).sum((1, 2)) / tot], 1)


def class_context(cls: int | str, tokens: int = PROMPT_TOKENS) -> torch.Tensor:
    """The fixed random 4096-d "prompt" of a class: exactly what the test-only node
    ``FastVMTTestConditioning(seed=0, tokens=8, text=<class name>)`` outputs, so a graph
    can ask for a class with that node. ``[1, tokens, 4096]``."""
    from comfy_host.stand_in_nodes import FastVMTTestConditioning
    name = CLASSES[cls] if isinstance(cls, int) else cls
    return FastVMTTestConditioning().encode(0, tokens, name)[0][0][0].cpu()
