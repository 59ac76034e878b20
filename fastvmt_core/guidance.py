"""The guidance objective, one entry point for both flow definitions.

``guidance_loss(settings, ref_q, ref_k, gen_q, gen_k)`` is what a guided step minimises; the
sampler hook (``nodes/wan/guided_step.py``) calls the same two pieces, ``motion_flow`` for the
reference once per guided step and ``flow_guidance_loss`` on every gradient evaluation.
"""

from __future__ import annotations

import torch

from .amf import MotionFlow, global_amf, sliding_window_amf
from .motion_controls import controlled_loss
from .optimize import linear_lr, released_lr
from .released_flow import released_amf_loss, released_flow, released_head_mean, released_window_loss
from .settings import FastVMTSettings


def motion_flow(settings: FastVMTSettings, q: torch.Tensor, k: torch.Tensor) -> MotionFlow:
    """The motion flow of one latent's motion-block queries/keys [F, H, W, D]."""
    if settings.flow_definition == "released":
        return released_flow(q, k, temporal_span=settings.temporal_span, window=settings.window,
                             tile=settings.tile, tau=settings.tau)
    if settings.mode == "AMF":
        return global_amf(q, k, temporal_span=None, tau=settings.tau)
    return sliding_window_amf(q, k, temporal_span=settings.temporal_span, window=settings.window,
                              tile=settings.tile, tau=settings.tau)


def flow_guidance_loss(settings: FastVMTSettings, ref, gen: MotionFlow) -> tuple[torch.Tensor, dict[str, float]]:
    """lambda_amf x flow loss + lambda_window x window loss, and the two parts as floats.

    ``ref`` is the reference's flow, or its MotionTargets under motion controls (paper only)."""
    if settings.flow_definition == "released":
        if not isinstance(ref, MotionFlow):
            raise ValueError("motion controls (masks, strength, transfer) work with flow_definition 'paper' only")
        l_flow = released_amf_loss(ref, gen, settings.temporal_span)
        l_win = released_window_loss(gen) if settings.lambda_window != 0 else l_flow * 0.0
        total = settings.lambda_amf * l_flow + settings.lambda_window * l_win
        return total, {"amf": float(l_flow.detach()), "window": float(l_win.detach())}
    return controlled_loss(ref, gen, lambda_amf=settings.lambda_amf, lambda_window=settings.lambda_window,
                           alpha=settings.alpha)


def guidance_loss(settings: FastVMTSettings, ref_q: torch.Tensor, ref_k: torch.Tensor, gen_q: torch.Tensor,
                  gen_k: torch.Tensor) -> torch.Tensor:
    """The total guidance loss of generated queries/keys against the reference's, all [F, H, W, D];
    a scalar, differentiable in ``gen_q`` / ``gen_k`` (the reference side carries no gradient)."""
    with torch.no_grad():
        ref = motion_flow(settings, ref_q, ref_k).detach()
    return flow_guidance_loss(settings, ref, motion_flow(settings, gen_q, gen_k))[0]


def head_mean(flow_definition: str, x: torch.Tensor) -> torch.Tensor:
    """Per-head queries or keys [B, S, heads, d] -> one vector per token [B, S, d]: the mean over
    heads (paper), or the released code's reshape-then-mean (``released_head_mean``)."""
    if flow_definition == "released":
        return released_head_mean(x)
    return x.mean(dim=2)


def latent_optimizer_options(settings: FastVMTSettings, model_dtype: torch.dtype) -> dict:
    """``optimize_latent``'s lr schedule and parameter dtype: the released code's optimiser works
    in the model's dtype (bf16 on its GPU runs) with its own schedule; the paper's in float32."""
    if settings.flow_definition == "released":
        return {"lr_schedule": released_lr, "dtype": model_dtype}
    return {"lr_schedule": linear_lr, "dtype": torch.float32}
