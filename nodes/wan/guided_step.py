"""One guided outer step: optimise the latent against the reference's motion flow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from fastvmt_core import (FastVMTSettings, flow_guidance_loss, latent_optimizer_options, motion_flow, optimize_latent,
                          windowed_loss)
from fastvmt_core import motion_controls as controls_core  # strength, transfer, regions
from .checks import no_gradient_message
from .comfy_compat import compute_dtype, throw_if_interrupted
from .context_windows import window_pass, windows_at
from .image_to_video import HeldEntries
from .qk_capture import PassCounter, QKPass, capture_qk
from .reference import ReferenceMotion, reference_flow

log = logging.getLogger("FastVMT")


@dataclass
class GuidanceContext:
    """Everything a guided step needs, built once per sampling run."""
    gen_pass: QKPass                  # the generation's gradient passes
    reference: ReferenceMotion
    settings: FastVMTSettings
    counter: PassCounter = field(default_factory=PassCounter)
    progress: object = None           # callable(outer_step, inner_step, x) -> None
    gen_held: HeldEntries | None = None  # entries the sampler holds fixed in the generated latent
    step_log: list = field(default_factory=list)
    window_passes: dict = field(default_factory=dict)  # context_windows.window_pass's cache

    @property
    def base_model(self):
        return self.gen_pass.base_model


def guide_latent(ctx: GuidanceContext, x: torch.Tensor, sigma, step_index: int) -> torch.Tensor:
    """Optimise the latent at one guided outer step; returns the new latent (same dtype)."""
    s = ctx.settings
    start = time.perf_counter()
    # Under context windows: this step's windows, as the sampler's model calls will run them.
    windows = windows_at(ctx.gen_pass.model_options, ctx.base_model, ctx.gen_pass.conds, x, sigma)
    with torch.inference_mode(False):
        if windows is None:
            ref, ref_sigma = reference_flow(ctx.reference, s, ctx.counter, sigma)
        else:
            refs = [reference_flow(ctx.reference, s, ctx.counter, sigma, w) for w in windows]
            ref, ref_sigma = [r for r, _ in refs], refs[0][1]
        sigma_t = torch.as_tensor(sigma).reshape(1)
        held = ctx.gen_held
        # A clone made here is an ordinary tensor: autograd saves it (the mask came from inference mode).
        mask = held.mask_at(sigma_t.to(x.device)).clone() if held is not None else None
        region = controls_core.latent_region(ctx.reference.controls, x)  # generation mask, or None
        window_losses = []   # per gradient evaluation: each window's loss
        x_opt, stats = optimize_latent(x.detach().clone(),
                                       _loss_function(ctx, ref, sigma_t, mask, region, windows, window_losses),
                                       steps=s.inner_steps, interval=s.effective_interval, lr_start=s.lr_start,
                                       lr_end=s.lr_end, on_step=_on_inner_step(ctx, step_index),
                                       **latent_optimizer_options(s, compute_dtype(ctx.base_model)))
        # Entries guidance may not change (held by the sampler, or outside the generation mask)
        # have no gradient, but AdamW's weight decay still moves them: put them back, once.
        editable = region if mask is None else (mask if region is None else mask * region)
        x_opt = controls_core.keep_outside(x_opt, x, editable)
    ctx.step_log.append({"step": step_index, "sigma": float(sigma), "reference_sigma": ref_sigma,
                         "losses": stats.losses, "gradient_evaluations": stats.gradient_evaluations,
                         "stopped": stats.stop_reason,
                         "seconds": time.perf_counter() - start,
                         "windows": len(windows) if windows else 0,
                         "window_lengths": sorted({len(w) for w in windows}) if windows else [],
                         "window_frames": [[w[0], w[-1]] for w in windows] if windows else [],
                         "window_losses": window_losses,
                         **controls_core.region_change(x_opt, x, region)})
    if stats.stopped_early:
        log.warning("FastVMT: guided step %d stopped early (%s); kept the last finite latent",
                    step_index, stats.stop_reason)
    return x_opt.to(dtype=x.dtype)


def _loss_function(ctx: GuidanceContext, ref, sigma_t, mask, region, windows, window_losses: list):
    """The loss of a latent: on the whole latent, or (``windows``; ``ref`` then holds one
    reference flow per window) the mean of the windows' losses, one gradient pass each
    (appended to ``window_losses``, one list per evaluation)."""
    held = ctx.gen_held

    def loss_fn(xv):
        xv = controls_core.confine(xv, region)  # no gradient outside the generation mask
        # Held entries reach the model as the sampler shows them, so they get no gradient.
        x_in = held.model_input(ctx.base_model, xv, sigma_t, mask) if held is not None else xv
        if windows is None:
            return _flow_loss(ctx, ctx.gen_pass, ref, x_in, sigma_t)

        values = []
        window_losses.append(values)

        def window_loss(sub, index):
            spec = window_pass(ctx.gen_pass, x_in, windows[index], ctx.window_passes)
            loss, parts = _flow_loss(ctx, spec, ref[index], sub, sigma_t)
            values.append(float(loss.detach()))
            return loss, parts
        return windowed_loss(x_in, windows, window_loss, between=throw_if_interrupted)
    return loss_fn


def _flow_loss(ctx: GuidanceContext, spec, ref, x_in, sigma_t):
    """The guidance loss of latent ``x_in`` against reference flow ``ref``: one gradient pass."""
    q, k = capture_qk(spec, x_in, sigma_t, ctx.counter)
    if not q.requires_grad:
        raise ValueError(no_gradient_message(ctx.base_model))
    losses, parts = [], {"amf": 0.0, "window": 0.0}
    for b in range(q.shape[0]):  # batch of latents: one flow each, same reference
        loss, p = flow_guidance_loss(ctx.settings, ref, motion_flow(ctx.settings, q[b], k[b]))
        losses.append(loss)
        parts = {key: parts[key] + p[key] for key in parts}
    return torch.stack(losses).sum(), parts


def _on_inner_step(ctx: GuidanceContext, step_index: int):
    def on_step(j, stats, latent):
        throw_if_interrupted()
        if ctx.progress is not None:
            ctx.progress(step_index, j, latent)
    return on_step
