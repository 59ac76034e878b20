"""Input checks: a clear error naming the input and the fix, before any long work."""

from __future__ import annotations

import torch

from fastvmt_core import EXTRACTION_FIELDS, FastVMTSettings, check_released_grid
from ..motion import MotionReference
from .comfy_compat import CONCAT_LATENT, CONCAT_MASK, is_ksampler
from .geometry import WanGeometry, pixels_per_latent, token_grid


def check_block_index(geometry: WanGeometry, block: int, input_name: str = "motion_block") -> None:
    if not 0 <= block < geometry.num_blocks:
        raise ValueError(f"{input_name}: block index {block} is out of range; this Wan model has "
                         f"{geometry.num_blocks} blocks (valid 0..{geometry.num_blocks - 1}; the paper uses 14 of 30, "
                         f"about the middle).")


def check_latent_size(geometry: WanGeometry, latent_shape, width: int, height: int, length: int) -> None:
    """An encoded reference latent is used as it is (width / height / length only resize
    'images'), so those inputs, which must equal the generation's size, must be its size."""
    _, _, f, h, w = latent_shape
    scale = pixels_per_latent(geometry)
    size = {"width": w * scale, "height": h * scale, "length": (f - 1) * 4 + 1}
    given = {"width": width, "height": height, "length": length}
    wrong = [name for name in size if given[name] != size[name]]
    if wrong:
        raise ValueError(
            f"{' / '.join(wrong)}: the connected latent ({_count(f, 'frame')} x {h}x{w} latent pixels) is a "
            f"{size['width']}x{size['height']} video of {_count(size['length'], 'frame')}, but "
            + ", ".join(f"{name} is {given[name]}" for name in wrong)
            + ". An encoded latent is used as it is (width / height / length only resize 'images'): set "
            f"width {size['width']}, height {size['height']}, length {size['length']} and generate at that size, "
            "or connect the reference frames to 'images' (with 'vae') to have them resized.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def resolve_settings(motion: MotionReference, settings: FastVMTSettings | None) -> FastVMTSettings:
    """Extraction knobs come from the motion, guidance knobs from the settings node."""
    base = settings if settings is not None else FastVMTSettings()
    resolved = base.replace(**{name: getattr(motion.settings, name) for name in EXTRACTION_FIELDS})
    try:
        resolved.check_exit_block()
    except ValueError as exc:
        raise ValueError(f"settings: {exc}") from None
    return resolved


def check_motion_matches(motion: MotionReference, geometry: WanGeometry, latent_shape, where: str = "motion"):
    """Clear errors, before any work, when the motion cannot guide this model and latent."""
    ref = motion.latent
    if ref.shape[1] != geometry.latent_channels:
        raise ValueError(f"{where}: the reference latent has {ref.shape[1]} channels but this model samples "
                         f"{geometry.latent_channels}-channel latents ({geometry.model_class}). Extract the motion "
                         "with the same model family (Wan 2.1 / 2.2 14B use 16 channels, Wan 2.2 5B uses 48).")
    check_block_index(geometry, motion.settings.motion_block, f"{where} (motion_block)")
    if tuple(ref.shape[2:]) != tuple(latent_shape[2:]):
        f, h, w = ref.shape[2:]
        tf, th, tw = latent_shape[2:]
        raise ValueError(f"{where}: the reference latent is {f} frames x {h}x{w} but the latent being sampled is "
                         f"{tf} frames x {th}x{tw} (latent units: pixels/8, frames (n-1)/4+1). Extract the motion "
                         f"at the generation's width, height and length ({tw * 8}x{th * 8}, {(tf - 1) * 4 + 1} "
                         "frames), or make the empty latent match the reference."
                         + (_shorter_reference(f, tf) if f < tf and (h, w) == (th, tw) else ""))
    if geometry.image_to_video == "concat":
        _check_concat_image(motion, geometry, where)


def _shorter_reference(ref_frames: int, frames: int) -> str:
    return (f" A reference shorter than the video is neither looped nor stretched (its {(ref_frames - 1) * 4 + 1} "
            f"frames would map onto other frames' motion): give a clip of at least {(frames - 1) * 4 + 1} frames, "
            "or generate as many frames as the clip has.")


def _check_concat_image(motion: MotionReference, geometry: WanGeometry, where: str) -> None:
    img = motion.image
    clip = " and the CLIP vision model (clip_vision_h.safetensors) to clip_vision" if geometry.image_branch else ""
    if img is None or img.kind != "concat":
        made_for = "text-to-video" if img is None else "Wan 2.2 TI2V 5B"
        raise ValueError(f"{where}: this is a Wan image-to-video model (its start image is concatenated to the "
                         f"latent, as WanImageToVideo sets it up) but the motion was extracted for {made_for}, so "
                         "its reference pass has no start image of its own. Re-extract the motion: connect this "
                         f"model, the reference images and the Wan VAE to Extract Motion{clip}.")
    if geometry.image_branch and img.clip_vision is None:
        raise ValueError(f"{where}: this Wan 2.1 image-to-video model embeds CLIP-vision tokens of the start "
                         "image, but the motion has none for its reference's first frame. Re-extract the motion "
                         f"with this model{clip}.")


def check_start_image(geometry: WanGeometry, positive, where: str = "positive") -> None:
    """A concat image-to-video model sampled without a start image: the reference pass would be
    conditioned on an image the generation does not have. ``positive``: CONDITIONING, or the
    guider's converted conds."""
    if geometry.image_to_video != "concat":
        return
    entries = [c[1] if isinstance(c, (list, tuple)) else c for c in positive]
    if not any(isinstance(e, dict) and e.get(CONCAT_LATENT) is not None for e in entries):
        raise ValueError(f"{where}: this Wan image-to-video model has no start image in its conditioning. Connect "
                         "the image to start_image on WanImageToVideo (and its positive / negative outputs to the "
                         "sampler); FastVMT conditions the reference pass on the reference's first frame the same "
                         "way.")
    if any(_holds_last_frame(e.get(CONCAT_MASK)) for e in entries if isinstance(e, dict)):
        raise ValueError(f"{where}: this conditioning holds the last frame too (first-and-last-frame, e.g. "
                         "WanFirstLastFrameToVideo). FastVMT conditions the reference pass on the reference's first "
                         "frame only, so the two passes would not match: use WanImageToVideo (start image only) "
                         "with FastVMT, or sample without it.")


def _holds_last_frame(mask) -> bool:
    """A concat mask [B, 4, F, H, W] (0 = given) whose last latent frame is given, beyond the first."""
    return isinstance(mask, torch.Tensor) and mask.ndim == 5 and mask.shape[2] > 1 and bool((mask[:, :, -1] < 1).any())


def check_masked_latent(motion: MotionReference, geometry: WanGeometry, where: str = "motion") -> None:
    """A TI2V generation (noise mask on the latent) needs the reference's first-frame conditioning."""
    if geometry.image_to_video == "first_frame" and motion.image is None:
        raise ValueError(f"{where}: this Wan 2.2 TI2V generation holds its start image under a noise mask "
                         "(Wan22ImageToVideoLatent), but the motion was extracted without image-to-video "
                         "conditioning (an older motion file, or another model). Re-extract it with Extract Motion "
                         "connected to this model.")


def check_ksampler(sampler) -> None:
    if not is_ksampler(sampler):
        raise ValueError(f"FastVMT guidance works with ComfyUI's k-diffusion samplers (KSAMPLER); this sampler is a "
                         f"{type(sampler).__name__}. Pick a sampler from KSamplerSelect or the KSampler list.")


# Why a gradient pass lost the latent's gradient, where the pass could tell (lost_gradient_message).
_LOST_GRADIENT_CAUSES = {
    "no_grad": "ComfyUI ran the model under torch.no_grad() (a node or ComfyUI wraps the model call without "
               "autograd), so the guidance pass lost the latent's gradient. ",
    "detached": "the latent reached the Wan DiT detached from autograd (a node or ComfyUI copied the model "
                "input without it). ",
}
MULTIGPU_NO_GRAD = ("model: ComfyUI ran the model under torch.no_grad() (multi-GPU cond batching, "
                    "`_calc_cond_batch_multigpu`): FastVMT guidance needs gradients; use one GPU / disconnect the "
                    "MultiGPU node.")


def lost_gradient_message(base_model, cause: str | None) -> str:
    """The error for a gradient pass whose motion-block queries do not depend on the latent:
    ``cause`` "multigpu", "no_grad", "detached", or None (a weight format, kernel or patch)."""
    if cause == "multigpu":
        return MULTIGPU_NO_GRAD
    return no_gradient_message(base_model, _LOST_GRADIENT_CAUSES.get(cause, ""))


def no_gradient_message(base_model, cause: str = "") -> str:
    """The error for a model whose forward does not carry a gradient back to the latent."""
    dm = base_model.diffusion_model
    linear = dm.blocks[0].self_attn.q
    fmt = (f"{type(dm).__name__}, weights {linear.weight.dtype} in {type(linear).__module__}."
           f"{type(linear).__qualname__}, compute dtype {base_model.manual_cast_dtype or base_model.get_dtype()}")
    return (f"model: {cause}FastVMT needs the gradient of the motion block's queries/keys with respect to the latent, "
            f"and this model's forward does not carry one ({fmt}). A weight format, kernel or model patch runs "
            "without autograd. Load the model with 'Load Diffusion Model' and weight_dtype 'default' (or "
            "ComfyUI-GGUF's loader), and remove nodes that wrap the model call between the loader and the "
            "sampler; attention backends (SageAttention, flash) are handled by FastVMT.")


def check_flow_definition(settings: FastVMTSettings, geometry: WanGeometry, latent_shape, controls,
                          where: str = "settings (flow_definition)") -> None:
    """flow_definition 'released' computes on exactly tiled grids, with the released head
    averaging and without motion controls: refused by name before sampling otherwise."""
    if settings.flow_definition != "released":
        return
    f, h, w = token_grid(latent_shape, geometry.patch_size)
    try:
        check_released_grid(h, w, settings.window, settings.tile)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if (f * h * w) % geometry.num_heads:
        raise ValueError(f"{where}: 'released' averages heads over groups of {geometry.num_heads} tokens, and "
                         f"{f * h * w} tokens do not divide into them; use flow_definition 'paper'")
    if controls is not None:
        raise ValueError(f"{where}: reference_mask / generation_mask work with flow_definition 'paper' only (the "
                         "released code has no motion controls); disconnect the masks or use 'paper'")
