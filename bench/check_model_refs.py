"""References with known motion for ``python -m bench.quality --check-model``, and the
motion each one should show in a token flow.

A reference is a moving latent, its still twin (frame 0 held for the whole clip, same
shape) and the per-token motion the flow of the moving one should show over the still
one: ``truth`` ``[P, H, W, 2]`` in tokens, (dy, dx), for the flow's frame pairs
(``fastvmt_core.frame_pairs``), or ``None`` when only a classical estimate exists.

Three kinds:
- ``shapes_v2`` / ``shapes_v1``: clips of the shapes models (``bench.shapes_v2``,
  ``bench.shapes``), whose camera and shape paths are known. Per latent pixel the truth is
  the shape's own step where a shape covers the pixel in frame i, the camera's otherwise;
  a token takes the mean of its 2x2 pixels.
- ``texture``: any Wan model without a clip: a smooth random texture moving by a known
  rule in latent space (``bench.quality.known_motion_latent``).
- ``video``: a real clip through a Wan VAE; its motion is read by a classical optical
  flow (OpenCV's Farneback) on the pixels instead of a ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench import shapes, shapes_v2
from bench.textures import known_motion_latent
from fastvmt_core import frame_pairs

TEXTURE_MOTIONS = {"translation": (1.0, 2.0), "apart": None}   # latent px per frame (dy, dx); apart: halves split


@dataclass(frozen=True)
class Reference:
    name: str
    latent: torch.Tensor          # model-space latent [1, C, F, H, W]
    still: torch.Tensor           # the same with frame 0 held
    truth: torch.Tensor | None    # [P, h, w, 2] token motion (dy, dx) of the flow's pairs, or None
    classical: torch.Tensor | None = None   # video: Farneback's token motion, [P, h, w, 2]
    context: torch.Tensor | None = None     # [1, T, 4096] prompt embedding the pass reads with


def still_of(latent: torch.Tensor) -> torch.Tensor:
    """Frame 0 held for every frame (``[B, C, F, H, W]``)."""
    return latent[:, :, :1].expand_as(latent).contiguous()


def pixels_to_tokens(disp: torch.Tensor, patch: int = 2) -> torch.Tensor:
    """Per-pixel motion ``[P, H, W, 2]`` (x, y) in latent pixels -> per-token ``[P, H/p, W/p, 2]``
    (dy, dx) in tokens: the mean over each token's pixels, divided by the patch size."""
    p, h, w, _ = disp.shape
    cells = disp.reshape(p, h // patch, patch, w // patch, patch, 2).mean(dim=(2, 4)) / patch
    return cells.flip(-1)


def inside(truth: torch.Tensor) -> torch.Tensor:
    """``[P, H, W]`` bool: tokens whose true destination stays inside the frame. Content that
    leaves (or enters at) the border has nothing to match, so the scores leave it out."""
    _, h, w, _ = truth.shape
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    y, x = ys + truth[..., 0], xs + truth[..., 1]
    return (y > 0) & (y < h) & (x > 0) & (x < w)


def pixel_grid(size_h: int, size_w: int) -> torch.Tensor:
    """Pixel centres ``[H, W, 2]`` (x, y) at +0.5."""
    ys, xs = torch.meshgrid(torch.arange(size_h) + 0.5, torch.arange(size_w) + 0.5, indexing="ij")
    return torch.stack([xs, ys], -1)


def camera_motion(camera: torch.Tensor, pairs, size: int) -> torch.Tensor:
    """Where each pixel of frame i is in frame j under ``camera`` ``[F, 2, 3]`` (scene ->
    frame, latent pixels): ``[P, H, W, 2]`` (x, y)."""
    p = pixel_grid(size, size).double()
    cam = camera.double()
    out = []
    for i, j in pairs:  # frame pairs, a few dozen
        a_i, t_i, a_j, t_j = cam[i, :, :2], cam[i, :, 2], cam[j, :, :2], cam[j, :, 2]
        scene = (p - t_i) @ torch.linalg.inv(a_i).T
        out.append(scene @ a_j.T + t_j - p)
    return torch.stack(out).float()


def shapes_motion(background: torch.Tensor, classes: torch.Tensor, paths: torch.Tensor, radii: torch.Tensor,
                  present: torch.Tensor, pairs, size: int) -> torch.Tensor:
    """``background`` motion ``[P, H, W, 2]`` with the pixels a shape covers (> 0.5) in frame i
    replaced by that shape's own step; later shapes are drawn on top, as ``shapes_v2.compose``."""
    out = background.clone()
    ii = torch.tensor([i for i, _ in pairs])
    jj = torch.tensor([j for _, j in pairs])
    for k in range(paths.shape[0]):  # shape slots (one or two)
        if not bool(present[k]):
            continue
        cover = shapes.render(classes[:1], paths[k][None], radii[k:k + 1], size)[0] > 0.5    # [F, H, W]
        step = (paths[k][jj] - paths[k][ii])[:, None, None, :]                                 # [P, 1, 1, 2]
        out = torch.where(cover[ii][..., None], step.expand_as(out), out)
    return out


def shapes_v2_reference(seed: int, span: int, spec: shapes_v2.ClipSpecV2 = shapes_v2.ClipSpecV2(camera_p=1.0)):
    clip = shapes_v2.sample(torch.Generator().manual_seed(50_000 + seed), 1, spec)
    pairs = frame_pairs(spec.frames, span)
    bg = camera_motion(clip.camera[0], pairs, spec.size)
    disp = shapes_motion(bg, clip.classes, clip.paths[0], clip.radii[0], clip.present[0], pairs, spec.size)
    latent = clip.latent
    return Reference(f"shapes v2, seed {seed}", latent, still_of(latent), pixels_to_tokens(disp),
                     context=shapes.class_context(int(clip.classes[0]))[None])


def shapes_v1_reference(seed: int, span: int, spec: shapes.ClipSpec = shapes.ClipSpec()):
    g = torch.Generator().manual_seed(60_000 + seed)
    cls = torch.randint(0, len(shapes.CLASSES), (1,), generator=g)
    paths, radii = shapes.random_paths(g, 1, spec)
    latent = shapes.encode(shapes.render(cls, paths, radii, spec.size))
    pairs = frame_pairs(spec.frames, span)
    still_bg = torch.zeros(len(pairs), spec.size, spec.size, 2)   # black background: nothing moves there
    disp = shapes_motion(still_bg, cls, paths, radii, torch.ones(1, dtype=torch.bool), pairs, spec.size)
    return Reference(f"shapes v1, seed {seed}", latent, still_of(latent), pixels_to_tokens(disp),
                     context=shapes.class_context(int(cls))[None])


def texture_reference(kind: str, seed: int, span: int, frames: int, size: tuple[int, int], channels: int):
    """A texture moving by ``TEXTURE_MOTIONS[kind]``; ``channels`` as the model's latent has."""
    h, w = size
    lat = known_motion_latent(kind, frames, h, w, seed=70_000 + seed)
    if channels != lat.shape[1]:
        lat = lat.repeat(1, -(-channels // lat.shape[1]), 1, 1, 1)[:, :channels]
    pairs = frame_pairs(frames, span)
    steps = torch.tensor([j - i for i, j in pairs], dtype=torch.float32)[:, None, None]
    if kind == "translation":
        dy, dx = TEXTURE_MOTIONS[kind]
        disp = torch.stack([dx * steps, dy * steps], -1).expand(len(pairs), h, w, 2)
    else:
        xs = pixel_grid(h, w)[..., 0]
        dx = torch.where(xs < w / 2, -2.0, 2.0)[None] * steps
        disp = torch.stack([dx, torch.zeros_like(dx)], -1)
    return Reference(f"texture {kind}, seed {seed}", lat, still_of(lat), pixels_to_tokens(disp.contiguous()))


# --------------------------------------------------------------------------- real clips

def latent_frame_pixel(t: int) -> int:
    """The pixel frame that stands for latent frame ``t`` of Wan's causal VAE (frame 0 alone,
    then chunks of four: the chunk's middle)."""
    return 0 if t == 0 else 4 * t - 2


def classical_motion(frames: np.ndarray, pairs, token_px: int) -> torch.Tensor:
    """Farneback flow of ``frames`` ``[N, H, W, 3]`` uint8 from each latent pair's first pixel
    frame to its second, averaged over token cells of ``token_px`` pixels: ``[P, H/px, W/px, 2]``
    (dy, dx), tokens. Frame-to-frame flows are summed over the pair's gap: exact for a pan,
    first order elsewhere, and far steadier than one flow across 4-12 frames."""
    import cv2
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    last = max(latent_frame_pixel(j) for _, j in pairs)
    steps = [torch.from_numpy(cv2.calcOpticalFlowFarneback(gray[k], gray[k + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0))
             for k in range(last)]                                      # [H, W, 2] (x, y) px, one per frame step
    cumulative = torch.cumsum(torch.stack([torch.zeros_like(steps[0])] + steps), 0)
    disp = torch.stack([cumulative[latent_frame_pixel(j)] - cumulative[latent_frame_pixel(i)] for i, j in pairs])
    p, h, w, _ = disp.shape
    cells = disp.reshape(p, h // token_px, token_px, w // token_px, token_px, 2).mean(dim=(2, 4)) / token_px
    return cells.flip(-1)
