"""Motion controls: how much of the reference's motion, which part of it, and where.

* ``motion_strength`` scales the target displacements: 0 asks for a still clip, 2 for
  twice the motion. The window (correspondence) loss looks at the generated clip alone
  (do the keys under each tile's window change smoothly from one target frame to the
  next?), so it holds for any strength and is left as it is.
* ``transfer``: "all" compares the whole flow; "camera" compares only the fitted global
  motion of the generated flow with the reference's (camera_motion.py), so objects move
  freely; "objects" compares only what is left after each flow's own global motion, so
  the camera is free.
* Regions (ComfyUI MASKs, resized to the token grid): the reference region says whose
  motion counts (it weights the reference's tokens, and is where its camera is fitted);
  the generation region says where the loss applies (it weights the generated tokens and
  the window loss's tiles, and guidance changes the latent only there).

With the defaults (strength 1, "all", no masks) ``build_controls`` returns None and the
guidance runs exactly the code it ran before the controls existed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .amf import MotionFlow
from .camera_motion import decompose, fit_camera
from .latent_motion import reference_motion
from .losses import amf_loss, total_loss, window_loss

TIME_STRIDE = 4          # video frames per latent frame after the first (Wan's VAEs)
ASPECT_TOLERANCE = 0.01  # masks within 1% of the video's aspect are only resized
STILL_MOTION = 0.25      # latent pixels per latent frame (2 video pixels per 4 frames with Wan 2.1's VAE):
                         # below this the reference's camera (or object) motion counts as none


@dataclass(frozen=True)
class MotionControls:
    """Strength, transfer and regions, fitted to one run's token grid.

    reference_region / generation_region: [F, H, W] token weights in 0..1 (latent frames x
    token grid), or None for everywhere. latent_region: [1, 1, F, H', W'] (latent shape),
    1 where guidance may change the latent (the generation region's tokens), else 0.
    reference_camera / reference_objects: the reference's motion read from its latent
    (latent_motion.py), latent pixels per latent frame; None with transfer "all".
    notes: what was done to fit the masks, and warnings, for the run summary.
    """

    strength: float = 1.0
    transfer: str = "all"
    reference_region: torch.Tensor | None = None
    generation_region: torch.Tensor | None = None
    latent_region: torch.Tensor | None = None
    tile: tuple[int, int] = (3, 4)
    reference_camera: float | None = None
    reference_objects: float | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MotionTargets:
    """What one reference flow asks of the generated flow under the controls.

    target [P, H, W, 2]: strength x (the reference flow | its camera field | its residual);
    weights [P, H, W]: per-token loss weights (None: plain mean); gen_prior [P, H, W]: the
    generation region at each pair's source frame (where the generated camera is fitted);
    tile_weights [F, tiles]: the window loss's tile weights.
    """

    flow: MotionFlow
    transfer: str
    target: torch.Tensor
    weights: torch.Tensor | None
    gen_prior: torch.Tensor | None
    tile_weights: torch.Tensor | None


# ---- masks -> token weights ----------------------------------------------------------

def check_mask(mask, name: str) -> torch.Tensor:
    """A ComfyUI MASK ([frames, H, W] or [H, W], 0..1) as float32 [frames, H, W]; a clear error otherwise."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3) or mask.numel() == 0:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"{name}: expected a MASK [frames, height, width]; got {got}")
    m = mask.detach().float().cpu()
    m = m[None] if m.ndim == 2 else m
    if not bool(torch.isfinite(m).all()):
        raise ValueError(f"{name}: contains NaN or infinite values; check the node that made the mask")
    if float(m.min()) < -1e-6 or float(m.max()) > 1 + 1e-6:
        raise ValueError(f"{name}: mask values must lie in 0..1 (got {float(m.min()):.3g}..{float(m.max()):.3g})")
    if not bool((m > 0).any()):
        raise ValueError(f"{name}: the mask selects nothing (every value is 0). Paint the region, or disconnect "
                         "the mask to use the whole frame.")
    return m


def _centre_crop(m: torch.Tensor, aspect: float, name: str) -> tuple[torch.Tensor, list[str]]:
    """Crop [n, H, W] to ``aspect`` (width / height) about its centre, as Extract Motion crops frames."""
    n, h, w = m.shape
    have = w / h
    if abs(math.log(have / aspect)) <= math.log1p(ASPECT_TOLERANCE):
        return m, []
    if have > aspect:
        cw, ch = max(1, round(h * aspect)), h
    else:
        cw, ch = w, max(1, round(w / aspect))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    note = (f"{name}: the mask is {w}x{h} ({have:.2f}:1) but the video is {aspect:.2f}:1; it was centre-cropped to "
            f"{cw}x{ch}, as Extract Motion crops the reference frames. Give a mask of the video's size to choose "
            "the region yourself.")
    return m[:, y0:y0 + ch, x0:x0 + cw], [note]


def _to_latent_frames(m: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    """[n, h, w] -> [frames, h, w]: one mask for all frames, one per latent frame, or one per
    video frame (averaged over the video frames each latent frame encodes)."""
    n = m.shape[0]
    video = (frames - 1) * TIME_STRIDE + 1
    if n == frames:
        return m
    if n == 1:
        return m.expand(frames, -1, -1)
    if n == video:
        rest = m[1:].reshape(frames - 1, TIME_STRIDE, *m.shape[1:]).mean(dim=1)
        return torch.cat([m[:1], rest])
    raise ValueError(f"{name}: the mask has {n} frames; give 1 (one region for the whole clip), {frames} (one per "
                     f"latent frame) or {video} (one per video frame)")


def region_weights(mask, latent_fhw: tuple[int, int, int], patch: tuple[int, int, int],
                   name: str) -> tuple[torch.Tensor, list[str]]:
    """A MASK as token weights [F, H, W] (area average over each token), and notes on what was done."""
    f, h, w = latent_fhw
    if patch[0] != 1:
        raise ValueError(f"{name}: regions need a model whose tokens are one latent frame deep (Wan); patch {patch}")
    m, notes = _centre_crop(check_mask(mask, name), w / h, name)
    grid = (-(-h // patch[1]), -(-w // patch[2]))
    tokens = F.adaptive_avg_pool2d(m[:, None], grid)[:, 0]
    weights = _to_latent_frames(tokens, f, name).contiguous()
    if not bool((weights > 0).any()):
        raise ValueError(f"{name}: nothing of the mask is left on the video's {grid[1]}x{grid[0]} token grid")
    return weights, notes


def _latent_region(weights: torch.Tensor, latent_fhw, patch) -> torch.Tensor:
    """Token weights [F, H, W] -> [1, 1, F, H', W'] latent entries of the tokens with weight > 0."""
    _, h, w = latent_fhw
    inside = (weights > 0).float().repeat_interleave(patch[1], dim=1).repeat_interleave(patch[2], dim=2)
    return inside[None, None, :, :h, :w].contiguous()


def build_controls(settings, reference_mask, generation_mask, reference_latent: torch.Tensor,
                   patch) -> MotionControls | None:
    """The run's controls from the settings (motion_strength, transfer, tile) and the two
    optional masks, for the reference latent [1, C, F, H, W] (the generation's size) and the
    DiT's ``patch`` size. None when nothing differs from plain FastVMT."""
    if (settings.motion_strength == 1.0 and settings.transfer == "all" and reference_mask is None
            and generation_mask is None):
        return None
    latent_fhw = tuple(reference_latent.shape[2:])
    notes, ref_region, gen_region, latent = [], None, None, None
    if reference_mask is not None:
        ref_region, more = region_weights(reference_mask, latent_fhw, patch, "reference_mask")
        notes += more
    if generation_mask is not None:
        gen_region, more = region_weights(generation_mask, latent_fhw, patch, "generation_mask")
        notes += more
        latent = _latent_region(gen_region, latent_fhw, patch)
    if ref_region is not None and gen_region is not None and settings.transfer != "camera":
        if not bool(((ref_region * gen_region) > 0).any()):
            raise ValueError("reference_mask / generation_mask: the two regions do not overlap. Motion is compared "
                             "token by token at the same place in both clips, so with transfer "
                             f"'{settings.transfer}' nothing would be compared; let the regions overlap, or use "
                             "transfer 'camera' (the global motion does not depend on where it is measured).")
    camera = objects = None
    if settings.transfer != "all":
        camera, objects = reference_motion(reference_latent, ref_region)
        notes += _still_warnings(settings.transfer, camera, objects)
    return MotionControls(float(settings.motion_strength), settings.transfer, ref_region, gen_region, latent,
                          tuple(settings.tile), camera, objects, tuple(notes))


def _still_warnings(transfer: str, camera: float, objects: float) -> list[str]:
    """A warning when the part of the motion chosen by ``transfer`` is (almost) absent from the reference."""
    value, what, other = ((camera, "camera", "'all' or 'objects'") if transfer == "camera"
                          else (objects, "object", "'all' or 'camera'"))
    if value >= STILL_MOTION:
        return []
    held = "camera" if transfer == "camera" else "objects"
    return [f"transfer '{transfer}': the reference shows almost no {what} motion ({value:.2f} latent pixels per "
            f"latent frame, under {STILL_MOTION}), so guidance holds the generated {held} still; use {other} to "
            "transfer the motion the reference has"]


# ---- reference flow -> targets, and the loss -------------------------------------------

def _at_source(region: torch.Tensor | None, flow: MotionFlow) -> torch.Tensor | None:
    """A region [F, H, W] at each pair's source frame: [P, H, W]."""
    if region is None:
        return None
    return region.to(flow.displacement.device)[flow.pairs[:, 0].to(flow.displacement.device)]


def tile_weights(region: torch.Tensor, tile: tuple[int, int]) -> torch.Tensor:
    """Each tile's share of the region [F, H, W] -> [F, tiles], tiles row-major as amf.py lays
    them out (edge tiles clipped: averaged over their tokens inside the grid)."""
    f, h, w = region.shape
    th, tw = tile
    ny, nx = -(-h // th), -(-w // tw)
    pad = (0, nx * tw - w, 0, ny * th - h)
    total = F.pad(region, pad).reshape(f, ny, th, nx, tw).sum(dim=(2, 4))
    count = F.pad(torch.ones_like(region), pad).reshape(f, ny, th, nx, tw).sum(dim=(2, 4))
    return (total / count).reshape(f, ny * nx)


def controls_for_frames(controls: MotionControls | None, frames) -> MotionControls | None:
    """The controls of one window of latent ``frames`` (a context window): the token regions
    cut to those frames. ``latent_region`` stays whole (it masks the whole latent)."""
    if controls is None or frames is None:
        return controls
    index = torch.as_tensor(list(frames), dtype=torch.long)

    def cut(region):
        return None if region is None else region.index_select(0, index.to(region.device))
    return dataclasses.replace(controls, reference_region=cut(controls.reference_region),
                               generation_region=cut(controls.generation_region))


def motion_targets(flow: MotionFlow, controls: MotionControls | None):
    """What the generated flow is compared with: the reference flow itself without controls
    (plain FastVMT), else its MotionTargets."""
    if controls is None:
        return flow
    ref_prior = _at_source(controls.reference_region, flow)
    gen_prior = _at_source(controls.generation_region, flow)
    part = flow.displacement
    if controls.transfer != "all":
        fit, residual = decompose(flow.displacement, ref_prior)
        part = fit.field if controls.transfer == "camera" else residual
    if controls.transfer == "camera":
        weights = gen_prior  # the global motion is compared over the generation region
    elif ref_prior is None or gen_prior is None:
        weights = ref_prior if gen_prior is None else gen_prior
    else:
        weights = ref_prior * gen_prior
    tiles = None
    if controls.generation_region is not None:
        tiles = tile_weights(controls.generation_region, controls.tile).to(flow.displacement.device)
    return MotionTargets(flow, controls.transfer, (controls.strength * part).detach(), weights, gen_prior, tiles)


def controlled_loss(ref, gen: MotionFlow, *, lambda_amf: float = 5.0, lambda_window: float = 1.0,
                    alpha: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """``total_loss`` for a plain reference flow; under controls, the weighted distance of the
    generated flow's chosen part (whole, camera field, or residual) to the targets, plus the
    window loss over the generation region's tiles."""
    if isinstance(ref, MotionFlow):
        return total_loss(ref, gen, lambda_amf=lambda_amf, lambda_window=lambda_window, alpha=alpha)
    part = gen.displacement
    if ref.transfer != "all":
        fit = fit_camera(gen.displacement, ref.gen_prior)
        part = fit.field if ref.transfer == "camera" else gen.displacement - fit.field
    target = MotionFlow(ref.flow.pairs, ref.target, None, ref.flow.grid)
    l_motion = amf_loss(target, MotionFlow(gen.pairs, part, None, gen.grid), alpha=alpha, weights=ref.weights)
    l_win = window_loss(gen, ref.tile_weights) if lambda_window != 0 else l_motion * 0.0
    total = lambda_amf * l_motion + lambda_window * l_win
    return total, {"amf": float(l_motion.detach()), "window": float(l_win.detach())}


# ---- the latent outside the generation region ------------------------------------------

def latent_region(controls: MotionControls | None, x: torch.Tensor) -> torch.Tensor | None:
    """The generation region on ``x``'s device ([1, 1, F, H, W], broadcasts over batch and
    channels), or None when guidance may change the whole latent. A copy: one made outside
    inference mode is a tensor autograd may save (ComfyUI builds nodes' outputs inside it)."""
    if controls is None or controls.latent_region is None:
        return None
    return controls.latent_region.to(device=x.device, dtype=torch.float32).clone()


def confine(x: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """``x`` with no gradient path from the entries outside ``region`` (same values)."""
    if region is None:
        return x
    return x * region + x.detach() * (1.0 - region)


def keep_outside(x_new: torch.Tensor, x_old: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """``x_new`` inside the region, ``x_old`` outside (AdamW's weight decay moves every entry)."""
    if region is None:
        return x_new
    return x_new * region + x_old.to(x_new.dtype) * (1.0 - region)


def region_change(x_new: torch.Tensor, x_old: torch.Tensor, region: torch.Tensor | None) -> dict:
    """Largest change of the latent inside and outside the region (for the step log)."""
    if region is None:
        return {}
    diff = (x_new.float() - x_old.float()).abs()
    inside = region.expand_as(diff) > 0
    top = (lambda t: float(t.max()) if t.numel() else 0.0)
    return {"change_inside": top(diff[inside]), "change_outside": top(diff[~inside])}


# ---- the run summary ----------------------------------------------------------------------

def controls_summary(controls: MotionControls | None, steps) -> tuple[list[str], dict]:
    """Lines for the sampler's run summary and a dict for its report; ``steps``: the step log
    (its region_change entries)."""
    if controls is None:
        return [], {}
    info = {"motion_strength": controls.strength, "transfer": controls.transfer, "warnings": list(controls.notes),
            "reference_camera": controls.reference_camera, "reference_objects": controls.reference_objects}
    lines = [f"motion controls: motion_strength {controls.strength:g}, transfer '{controls.transfer}'"]
    if controls.reference_camera is not None:
        lines.append(f"reference motion read from its latent: camera {controls.reference_camera:.2f}, objects "
                     f"{controls.reference_objects:.2f} latent pixels per latent frame")
    for name, region in (("reference_mask", controls.reference_region),
                         ("generation_mask", controls.generation_region)):
        if region is not None:
            share = float((region > 0).float().mean())
            info[f"{name}_share"] = share
            lines.append(f"{name}: {share:.0%} of the token grid" + (
                "; only its tokens' motion is transferred" if name == "reference_mask" else
                "; the loss applies there and guidance changes the latent only there"))
    changes = [s for s in steps if "change_outside" in s]
    if changes:
        info["change_outside"] = max(s["change_outside"] for s in changes)
        info["change_inside"] = max(s["change_inside"] for s in changes)
        lines.append(f"latent change by guidance: up to {info['change_inside']:.3g} inside the generation mask, "
                     f"{info['change_outside']:.3g} outside")
    lines += [f"warning: {w}" for w in info["warnings"]]
    return lines, info
