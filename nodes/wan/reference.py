"""The reference side of a guided run: its latent, noise and conditioning, and its motion
flow at each guided step, read by a Q/K pass without gradients and cached by sigma."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastvmt_core import FastVMTSettings, motion_flow, reference_noise, reference_sigma
from fastvmt_core import motion_controls as controls_core
from ..motion import MotionReference
from .context_windows import window_pass
from .geometry import WanGeometry
from .image_to_video import HeldEntries, reference_conditioning
from .qk_capture import PassCounter, QKPass, capture_qk


@dataclass
class ReferenceMotion:
    """Everything the reference passes need, built once per sampling run."""
    qk_pass: QKPass                   # the reference's conds; reference passes run without gradients
    latent: torch.Tensor              # processed (model space) clean reference latent
    noise: torch.Tensor               # fixed-seed noise for re-noising the reference
    held: HeldEntries | None = None   # entries the reference holds fixed (TI2V: its own first frame)
    flows: dict = field(default_factory=dict)  # (reference sigma, window frames | None) -> MotionFlow
    #                                            (MotionTargets under controls)
    controls: object = None           # fastvmt_core.MotionControls, None for plain FastVMT
    window_passes: dict = field(default_factory=dict)  # context_windows.window_pass's cache


def prepare_reference(guider, motion: MotionReference, geometry: WanGeometry, settings: FastVMTSettings, noise,
                      latent_image, denoise_mask, extra_args: dict, controls=None) -> ReferenceMotion:
    base_model = guider.inner_model
    device = noise.device
    latent = base_model.process_latent_in(motion.latent.to(device=device, dtype=torch.float32))
    ref_noise = reference_noise(latent.shape, settings.reference_seed, avoid=noise).to(device)
    conds, held = reference_conditioning(guider, motion, geometry, noise, latent, ref_noise, latent_image,
                                         denoise_mask, extra_args.get("seed"))
    qk_pass = QKPass(base_model, conds, extra_args["model_options"], settings.motion_block, settings.exit_block,
                     flow_definition=settings.flow_definition)
    return ReferenceMotion(qk_pass, latent, ref_noise, held, controls=controls)


def reference_flow(ref: ReferenceMotion, settings: FastVMTSettings, counter: PassCounter, sigma, frames=None):
    """Motion flow of the reference at this guided step, and the sigma it was read at.

    "renoise": re-noised to the step's sigma, capped at ``reference_sigma_cap`` so the
    reference is never (near) pure noise; "clean": read once at the model's sigma_min.
    ``frames``: one context window's latent frames (the reference's frames map one to one
    onto the generation's), None for the whole latent. Flows are cached by sigma and
    window: steps above the cap share one reference pass per window.
    """
    if settings.reference_noise == "clean":
        ref_sigma = float(ref.qk_pass.base_model.model_sampling.sigma_min)
    else:
        ref_sigma = reference_sigma(float(sigma), settings.reference_sigma_cap)
    key = (ref_sigma, None if frames is None else tuple(frames))
    if key not in ref.flows:
        ref.flows[key] = controls_core.motion_targets(_flow_at(ref, settings, counter, ref_sigma, frames),
                                                      controls_core.controls_for_frames(ref.controls, frames))
    return ref.flows[key], ref_sigma


def _flow_at(ref: ReferenceMotion, settings: FastVMTSettings, counter: PassCounter, sigma, frames):
    base_model = ref.qk_pass.base_model
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(1).to(ref.latent.device)
    x_ref = base_model.model_sampling.noise_scaling(sigma, ref.noise, ref.latent, max_denoise=False)
    if ref.held is not None:
        x_ref = ref.held.model_input(base_model, x_ref, sigma, ref.held.mask_at(sigma))
    spec = ref.qk_pass
    if frames is not None:   # the held entries are put in on the whole latent, then the window is cut
        spec = window_pass(spec, x_ref, frames, ref.window_passes)
        x_ref = x_ref[:, :, list(frames)]
    with torch.no_grad():
        q, k = capture_qk(spec, x_ref, sigma, counter)
        return motion_flow(settings, q[0], k[0]).detach()
