"""Synthetic "shapes v2" videos: one or two white shapes moving over a textured
background that has its own camera motion, with the ground truth of both motions.

Compared with ``bench.shapes`` (v1: one shape on black, 16x16 latent, 8 frames):

- latent 32x32 (16x16 DiT tokens per frame with Wan's 1x2x2 patch), 12 latent frames;
- the background is a smooth random texture (two octaves of blurred noise, intensity
  0.05..0.5) seen through a camera that pans, zooms and slightly rotates: one
  similarity transform per frame;
- one or two shapes (circle, square or triangle) on their own smooth paths in screen
  coordinates, drawn white (intensity 1) over the moved background.

Prompt meaning: every shape in a clip has the same class, the clip's class; the prompt is
``bench.shapes.class_context(class)`` exactly as in v1, so "circle" asks for one or two
circles (``classes`` below has one entry per clip).

Ground truth (``Clips``): shape paths per frame in latent pixels (x, y of the shape's
centre, pixel centres at +0.5 as in ``bench.shapes.centroid_path``) and the camera matrix
per frame. Camera convention: ``camera[b, f]`` is the 2x3 matrix that maps a scene point
at ``p0`` in frame 0 (latent pixels, x, y) to ``p_f = A p0 + t`` in frame f, i.e.
``p_f = c + s_f R(theta_f) (p0 - c) + shift_f`` about the frame centre ``c``; frame 0 is the
identity. The background of frame f at pixel p shows the texture at ``A^-1 (p - t)``.

The latent goes through the same toy 16-channel codec as v1 (``bench.shapes.encode``),
so texture intensity enters the latent exactly as shape intensity does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench import shapes
from bench.shapes import CLASSES, class_context, decode, encode  # noqa: F401  (the v2 API re-exports them)


@dataclass(frozen=True)
class ClipSpecV2:
    frames: int = 12                 # latent frames
    size: int = 32                   # latent height = width
    radius: tuple = (3.2, 5.0)       # shape "radius" range in latent pixels
    travel: tuple = (6.0, 16.0)      # shape start-to-end distance range in latent pixels
    two_shapes_p: float = 0.5        # probability of a second shape (same class)
    camera_p: float = 0.8            # probability the camera moves at all
    pan: float = 8.0                 # largest camera shift over the clip, latent pixels
    zoom: tuple = (0.85, 1.2)        # range of the last frame's scale (log-uniform)
    rotate: float = 0.12             # largest rotation over the clip, radians
    texture: tuple = (0.05, 0.5)     # background intensity range


@dataclass(frozen=True)
class Clips:
    intensity: torch.Tensor   # [B, F, H, W] in 0..1
    classes: torch.Tensor     # [B] class index of every shape in the clip (the prompt)
    paths: torch.Tensor       # [B, 2, F, 2] shape centres (x, y), latent pixels
    radii: torch.Tensor       # [B, 2]
    present: torch.Tensor     # [B, 2] bool; shape 0 is always present
    camera: torch.Tensor      # [B, F, 2, 3] scene (frame 0) -> frame f, latent pixels
    scale: torch.Tensor       # [B, F]
    angle: torch.Tensor       # [B, F] radians
    shift: torch.Tensor       # [B, F, 2] latent pixels

    @property
    def latent(self) -> torch.Tensor:
        """Model-space latent ``[B, 16, F, H, W]`` (toy codec of ``bench.shapes``)."""
        return encode(self.intensity)


def canvas_margin(spec: ClipSpecV2) -> int:
    """Texture border beyond the frame so that any sampled camera sees only texture."""
    half = spec.size / 2
    reach = half * math.sqrt(2) / spec.zoom[0] + spec.pan / spec.zoom[0]    # rotated corner, zoomed out, shifted
    return int(math.ceil(reach - half)) + 2


def random_texture(gen: torch.Generator, batch: int, spec: ClipSpecV2) -> torch.Tensor:
    """Smooth random textures ``[B, N, N]`` over the frame plus ``canvas_margin`` each side:
    a coarse (blur sigma 4) and a fine (sigma 1.5) octave of Gaussian noise, min-max
    scaled into ``spec.texture`` per clip."""
    n = spec.size + 2 * canvas_margin(spec)
    noise = torch.randn(batch, 2, n, n, generator=gen)
    octaves = torch.cat([_blur(noise[:, :1], 4.0), _blur(noise[:, 1:], 1.5)], 1)
    octaves = octaves / octaves.flatten(2).std(2)[..., None, None]
    tex = octaves[:, 0] + 0.5 * octaves[:, 1]
    lo = tex.flatten(1).min(1).values[:, None, None]
    hi = tex.flatten(1).max(1).values[:, None, None]
    return spec.texture[0] + (spec.texture[1] - spec.texture[0]) * (tex - lo) / (hi - lo)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, 1, N, N]`` with circular padding (seamless noise)."""
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1))


def random_camera(gen: torch.Generator, batch: int, spec: ClipSpecV2):
    """Smooth camera motion: shift along a quadratic Bezier from 0, scale log-linear
    and rotation linear in time. Returns (scale [B, F], angle [B, F], shift [B, F, 2])."""
    moves = (torch.rand(batch, generator=gen) < spec.camera_p).float()
    t = torch.linspace(0, 1, spec.frames)[None, :]
    lz = math.log(spec.zoom[0]) + (math.log(spec.zoom[1]) - math.log(spec.zoom[0])) * torch.rand(batch, generator=gen)
    scale = torch.exp(moves[:, None] * lz[:, None] * t)
    angle = moves[:, None] * spec.rotate * (2 * torch.rand(batch, generator=gen) - 1)[:, None] * t
    end = spec.pan * torch.rand(batch, 1, generator=gen) * _unit(gen, batch)
    ctrl = 0.5 * end + 0.15 * spec.pan * torch.randn(batch, 2, generator=gen)
    tt = t[..., None]
    shift = moves[:, None, None] * (2 * (1 - tt) * tt * ctrl[:, None] + tt ** 2 * end[:, None])
    return scale, angle, shift


def _unit(gen, batch):
    a = 2 * math.pi * torch.rand(batch, generator=gen)
    return torch.stack([a.cos(), a.sin()], 1)


def camera_matrices(scale: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, F, 2, 3]``: p_f = c + s R (p0 - c) + shift, as ``[A | t]`` in latent pixels."""
    cos, sin = angle.cos() * scale, angle.sin() * scale
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)     # [B, F, 2, 2]
    c = torch.full(shift.shape, size / 2, dtype=shift.dtype, device=shift.device)
    t = c - (a @ c[..., None])[..., 0] + shift
    return torch.cat([a, t[..., None]], -1)


def warp_background(texture: torch.Tensor, camera: torch.Tensor, size: int) -> torch.Tensor:
    """Frames ``[B, F, size, size]`` of the texture ``[B, N, N]`` (frame 0 sits in its
    middle) seen through ``camera`` ``[B, F, 2, 3]``; one ``grid_sample`` per batch."""
    b, f = camera.shape[:2]
    n = texture.shape[-1]
    margin = (n - size) / 2
    c = torch.arange(size, dtype=texture.dtype, device=texture.device) + 0.5
    p = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).view(1, 1, -1, 2)           # [1, 1, P, 2] (x, y)
    a, t = camera[..., :2], camera[..., 2]
    p0 = ((p - t[:, :, None]) @ torch.linalg.inv(a).transpose(-1, -2))                  # [B, F, P, 2]
    grid = (p0 + margin) / n * 2 - 1                                                    # align_corners=False
    out = F.grid_sample(texture[:, None], grid.view(b, f * size * size, 1, 2), mode="bilinear",
                        padding_mode="reflection", align_corners=False)
    return out.view(b, f, size, size)


def random_shapes(gen: torch.Generator, batch: int, spec: ClipSpecV2):
    """Classes [B], paths [B, 2, F, 2], radii [B, 2], present [B, 2] (v1's path sampler)."""
    cls = torch.randint(0, len(CLASSES), (batch,), generator=gen)
    v1 = shapes.ClipSpec(frames=spec.frames, size=spec.size, radius=spec.radius, travel=spec.travel)
    p0, r0 = shapes.random_paths(gen, batch, v1)
    p1, r1 = shapes.random_paths(gen, batch, v1)
    second = torch.rand(batch, generator=gen) < spec.two_shapes_p
    present = torch.stack([torch.ones_like(second), second], 1)
    return cls, torch.stack([p0, p1], 1), torch.stack([r0, r1], 1), present


def compose(background: torch.Tensor, classes: torch.Tensor, paths: torch.Tensor, radii: torch.Tensor,
            present: torch.Tensor) -> torch.Tensor:
    """White shapes over ``background`` ``[B, F, H, W]``: coverage ``a`` (anti-aliased by
    ``bench.shapes.render``) blends ``I = (1 - a) I + a``; absent shapes add nothing."""
    size = background.shape[-1]
    out = background
    for k in range(paths.shape[1]):  # shape slots (two), not pixels
        a = shapes.render(classes, paths[:, k], radii[:, k], size) * present[:, k, None, None, None]
        out = out * (1 - a) + a
    return out


def sample(gen: torch.Generator, batch: int, spec: ClipSpecV2 = ClipSpecV2(),
           device: torch.device | str = "cpu") -> Clips:
    """A batch of random clips with their ground truth. All randomness comes from ``gen``
    (CPU) in a fixed order, so a seed fixes the clips on any device."""
    cls, paths, radii, present = random_shapes(gen, batch, spec)
    scale, angle, shift = random_camera(gen, batch, spec)
    texture = random_texture(gen, batch, spec)
    cls, paths, radii, present, scale, angle, shift, texture = (
        v.to(device) for v in (cls, paths, radii, present, scale, angle, shift, texture))
    camera = camera_matrices(scale, angle, shift, spec.size)
    intensity = compose(warp_background(texture, camera, spec.size), cls, paths, radii, present)
    return Clips(intensity=intensity, classes=cls, paths=paths, radii=radii, present=present, camera=camera,
                 scale=scale, angle=angle, shift=shift)
