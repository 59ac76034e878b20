"""One guided outer step: optimise the latent against the reference's motion flow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from fastvmt_core import FastVMTSettings, flow_guidance_loss, latent_optimizer_options, motion_flow, optimize_latent
from fastvmt_core import motion_controls as controls_core  # strength, transfer, regions
from .checks import no_gradient_message
from .comfy_compat import compute_dtype, throw_if_interrupted
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

    @property
    def base_model(self):
        return self.gen_pass.base_model


def guide_latent(ctx: GuidanceContext, x: torch.Tensor, sigma, step_index: int) -> torch.Tensor:
    """Optimise the latent at one guided outer step; returns the new latent (same dtype)."""
    s = ctx.settings
    start = time.perf_counter()
    with torch.inference_mode(False):
        ref, ref_sigma = reference_flow(ctx.reference, s, ctx.counter, sigma)
        sigma_t = torch.as_tensor(sigma).reshape(1)
        held = ctx.gen_held
        # A clone made here is an ordinary tensor: autograd saves it (the mask came from inference mode).
        mask = held.mask_at(sigma_t.to(x.device)).clone() if held is not None else None
        region = controls_core.latent_region(ctx.reference.controls, x)  # generation mask, or None
        x_opt, stats = optimize_latent(x.detach().clone(), _loss_function(ctx, ref, sigma_t, mask, region),
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
                         **controls_core.region_change(x_opt, x, region)})
    if stats.stopped_early:
        log.warning("FastVMT: guided step %d stopped early (%s); kept the last finite latent",
                    step_index, stats.stop_reason)
    return x_opt.to(dtype=x.dtype)


def _loss_function(ctx: GuidanceContext, ref, sigma_t, mask, region):
    s, held = ctx.settings, ctx.gen_held

    def loss_fn(xv):
        xv = controls_core.confine(xv, region)  # no gradient outside the generation mask
        # Held entries reach the model as the sampler shows them, so they get no gradient.
        x_in = held.model_input(ctx.base_model, xv, sigma_t, mask) if held is not None else xv
        q, k = capture_qk(ctx.gen_pass, x_in, sigma_t, ctx.counter)
        if not q.requires_grad:
            raise ValueError(no_gradient_message(ctx.base_model))
        losses, parts = [], {"amf": 0.0, "window": 0.0}
        for b in range(q.shape[0]):  # batch of latents: one flow each, same reference
            loss, p = flow_guidance_loss(s, ref, motion_flow(s, q[b], k[b]))
            losses.append(loss)
            parts = {key: parts[key] + p[key] for key in parts}
        return torch.stack(losses).sum(), parts
    return loss_fn


def _on_inner_step(ctx: GuidanceContext, step_index: int):
    def on_step(j, stats, latent):
        throw_if_interrupted()
        if ctx.progress is not None:
            ctx.progress(step_index, j, latent)
    return on_step
