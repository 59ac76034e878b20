"""Image-to-video: latent entries held under a denoise mask, and the reference pass's own
start-image conditioning.

``reference_conditioning`` gives the reference pass the reference's own first frame where
the generation has the user's start image (concat latent, mask, CLIP-vision tokens; or
TI2V's held first frame), and ``HeldEntries`` keeps latent entries under a denoise mask out
of the optimisation while showing them to the model as ComfyUI's KSamplerX0Inpaint does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..motion import MotionReference
from .checks import check_masked_latent, check_start_image
from .comfy_compat import (CLIP_VISION_OUTPUT, CONCAT_LATENT, CONCAT_MASK, CONTROL, clip_vision_output, convert_cond,
                           denoise_mask_function, has_clip_tokens, prepare_mask, process_conds)
from .geometry import WanGeometry

_REFERENCE = "fastvmt_reference"  # our name for the reference's conds in process_conds
_GENERATION_ONLY = (CONCAT_LATENT, CONCAT_MASK, CLIP_VISION_OUTPUT, CONTROL)


@dataclass
class HeldEntries:
    """Latent entries a sampler holds fixed under a denoise mask (TI2V's start image,
    inpainting). The model sees x where the mask is 1 and the sampler's stand-in where it
    is 0: the clean latent (WAN22) or the latent re-noised to sigma (other models), as
    ComfyUI's KSamplerX0Inpaint builds its input."""
    mask: torch.Tensor                 # [B, C, F, H, W], prepared to the latent's shape
    noise: torch.Tensor
    latent: torch.Tensor               # model space
    mask_function: object = None       # fn(sigma, mask): a node's denoise mask function, as the sampler applies it

    def mask_at(self, sigma) -> torch.Tensor:
        if self.mask_function is None:
            return self.mask
        return self.mask_function(sigma, self.mask)

    def model_input(self, base_model, x, sigma, mask) -> torch.Tensor:
        sigma_b = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)[:1].to(x.device).expand(x.shape[0])
        fixed = base_model.scale_latent_inpaint(x=x, sigma=sigma_b, noise=self.noise, latent_image=self.latent)
        return x * mask + fixed * (1.0 - mask)


def generation_held(guider, sigmas, noise, latent_image, denoise_mask, model_options) -> HeldEntries | None:
    """The entries the sampler holds fixed in the generated latent, or None."""
    if denoise_mask is None:
        return None
    return HeldEntries(mask=denoise_mask, noise=noise, latent=latent_image,
                       mask_function=denoise_mask_function(model_options, guider, sigmas))


def reference_conditioning(guider, motion: MotionReference, geometry: WanGeometry, noise, ref_latent, ref_noise,
                           latent_image, denoise_mask, seed):
    """Conditions of the reference pass, and the entries it holds fixed (or None).

    Text: the motion's own conditioning, else the generation's positive prompt. Image
    (image-to-video models): the reference's own first frame, prepared by Extract Motion,
    where the generation has the user's start image: the concat latent and mask (and
    CLIP-vision tokens when the generation has them), or for TI2V the reference latent's
    first frame held under the motion's mask whenever the generation is held under a mask.
    """
    base_model = guider.inner_model
    device = noise.device
    kind = geometry.image_to_video
    gen_positive = guider.original_conds.get("positive", [])
    image_keys, held = {}, None
    if kind == "concat":
        check_start_image(geometry, gen_positive)
        image_keys = _concat_image_keys(motion, gen_positive)
    elif kind == "first_frame" and denoise_mask is not None:
        check_masked_latent(motion, geometry)
        held = HeldEntries(mask=prepare_mask(motion.image.mask, noise.shape, device), noise=ref_noise,
                           latent=ref_latent)
    else:  # text-to-video: as before image-to-video support, so T2V results are unchanged
        if motion.conditioning is None:
            return guider.conds["positive"], None
        processed = process_conds(base_model, noise, {_REFERENCE: convert_cond(motion.conditioning)}, device,
                                  latent_image, denoise_mask, seed)
        return processed[_REFERENCE], None
    source = (convert_cond(motion.conditioning) if motion.conditioning is not None
              else [c.copy() for c in gen_positive])
    # The generation's start image and control hints describe the generation, not the reference.
    conds = [{**{k: v for k, v in c.items() if k not in _GENERATION_ONLY}, **image_keys} for c in source]
    processed = process_conds(base_model, noise, {_REFERENCE: conds}, device, ref_latent,
                              held.mask if held is not None else None, seed)
    return processed[_REFERENCE], held


def _concat_image_keys(motion: MotionReference, gen_positive) -> dict:
    img = motion.image  # kind checked by check_motion_matches
    keys = {CONCAT_LATENT: img.concat_latent, CONCAT_MASK: img.mask}
    if img.clip_vision is not None and any(c.get(CLIP_VISION_OUTPUT) is not None for c in gen_positive):
        keys[CLIP_VISION_OUTPUT] = clip_vision_output(img.clip_vision)
    return keys


def image_to_video_text(geometry: WanGeometry, ref_conds, ref_held, gen_held) -> str:
    """One line on what the image-to-video passes were given, or "" for text-to-video."""
    parts = []
    if geometry.image_to_video == "concat":
        clip = any(has_clip_tokens(c) for c in ref_conds)
        parts.append("reference pass conditioned on its own first frame"
                     + (" (concat latent and CLIP-vision tokens of the uncropped frame, as CLIPVisionEncode with "
                        "crop 'none' makes them: give your start image's CLIPVisionEncode crop 'none' too, its "
                        "default 'center' crops the start image and the two passes then differ)" if clip
                        else " (concat latent)"))
    if ref_held is not None:
        parts.append("reference pass holds its own first latent frame clean")
    if gen_held is not None:
        held = float((gen_held.mask == 0).float().mean())
        parts.append(f"{held:.0%} of the latent is held by the noise mask and left unchanged by guidance")
    return ("image-to-video: " + "; ".join(parts)) if parts else ""
