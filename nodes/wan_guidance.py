"""FastVMT inside ComfyUI's Wan sampling: the one place that knows ComfyUI internals.

* Q/K capture with early exit. A guidance pass runs the real model call
  (``comfy.samplers.calc_cond_batch``, exactly as the sampler does) with
  ``patches_replace["dit"][("double_block", i)]`` entries added to a *per-call copy*
  of the model options: blocks before the motion block run as usual, the motion
  block computes its head-averaged self-attention queries/keys and raises
  ``_MotionBlockReached``; no later block and no head is evaluated.
* Backward under ComfyUI's ``torch.inference_mode()``. Weights loaded by a node are
  inference tensors, which autograd refuses to save. Each block in a gradient pass
  runs with its parameters swapped for clones (``torch.func.functional_call``), under a
  per-block checkpoint (one block's activations and cloned weights at a time) unless
  activations are kept (faster; chosen by ``plan_memory`` from the estimate in
  ``fastvmt_core/memory.py``, which also reserves the memory through ComfyUI's model
  management before guidance).
* Sampling. ``fastvmt_sampler_wrapper`` is a ``SAMPLER_SAMPLE`` wrapper on a cloned
  ModelPatcher. ``guided_range`` locates the guided share of the whole denoising
  process in this call's sigmas (so split calls guide what one call would). The
  wrapper replaces the k-diffusion sampler function by ``guided_sampling`` (a plain
  function over tensors) for this run only: before each guided step the latent is
  optimised with ``fastvmt_core.optimize_latent``, then the stock sampler takes one
  step from it, drawing from one noise stream for the whole call. The stock KSampler,
  KSamplerAdvanced, SamplerCustomAdvanced and our Guidance Sampler node all go
  through it.
* Image-to-video. ``reference_conditioning`` gives the reference pass the reference's
  own first frame where the generation has the user's start image (concat latent, mask,
  CLIP-vision tokens; or TI2V's held first frame), and ``HeldEntries`` keeps latent
  entries under a denoise mask out of the optimisation while showing them to the model
  as ComfyUI's KSamplerX0Inpaint does.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch.utils.checkpoint import checkpoint

import comfy.ldm.modules.attention as comfy_attention
import comfy.ldm.wan.model as wan_model
import comfy.clip_vision
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import comfy.sampler_helpers
import comfy.samplers
from comfy.k_diffusion import sampling as k_sampling
from comfy_api.torch_helpers.torch_compile import COMPILE_KEY
from comfy.ldm.flux.math import apply_rope1

from ..fastvmt_core import (EXTRACTION_FIELDS, FastVMTSettings, PassGeometry, global_amf, gradient_pass_memory,
                            guided_end_percent, guided_prefix, optimize_latent, reference_sigma, sliding_window_amf)
from ..fastvmt_core import motion_controls as controls_core  # motion controls (strength, transfer, regions)
from .motion import MotionReference

log = logging.getLogger("FastVMT")

WRAPPER_KEY = "fastvmt"


# ---- model geometry -------------------------------------------------------------------

@dataclass(frozen=True)
class WanGeometry:
    model_class: str
    num_blocks: int
    dim: int
    num_heads: int
    head_dim: int
    latent_channels: int
    patch_size: tuple[int, int, int]
    image_to_video: str | None = None   # None (text-to-video), "concat" or "first_frame" (image_to_video_kind)
    image_branch: bool = False          # the DiT embeds CLIP-vision tokens (Wan 2.1 I2V's img_emb)

    def to_dict(self) -> dict:
        return {"model_class": self.model_class, "num_blocks": self.num_blocks, "dim": self.dim,
                "num_heads": self.num_heads, "latent_channels": self.latent_channels}


def wan_geometry(model_patcher, input_name: str = "model") -> WanGeometry:
    """Read the DiT's geometry from the loaded model; a clear error if it is not a Wan DiT."""
    base = getattr(model_patcher, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if not isinstance(dm, wan_model.WanModel):
        got = type(dm).__name__ if dm is not None else type(model_patcher).__name__
        raise ValueError(f"{input_name}: FastVMT needs a Wan video DiT (Wan 2.1 / 2.2, loaded with 'Load Diffusion "
                         f"Model'); this model's DiT is {got}. Connect a Wan model.")
    channels = base.latent_format.latent_channels
    return WanGeometry(type(dm).__name__, len(dm.blocks), dm.dim, dm.num_heads, dm.dim // dm.num_heads,
                       channels, tuple(dm.patch_size), image_to_video_kind(base),
                       getattr(dm, "img_emb", None) is not None)


def image_to_video_kind(base_model) -> str | None:
    """How this Wan model takes a start image. "concat": the image latent and a 4-channel
    mask are concatenated to the input (in_dim = 2 x channels + 4: Wan 2.1 I2V, Wan 2.2 14B
    I2V). "first_frame": ComfyUI's WAN22 model (Wan 2.2 TI2V 5B) holds the image latent in
    the sampled latent under a noise mask and gives it timestep 0. None: text-to-video."""
    channels = base_model.latent_format.latent_channels
    # .shape, not weight.shape[1] of a dequantised copy: GGUF tensors report their logical shape
    in_dim = base_model.diffusion_model.patch_embedding.weight.shape[1]
    if in_dim == 2 * channels + 4:
        return "concat"
    if isinstance(base_model, comfy.model_base.WAN22):
        return "first_frame"
    return None


def check_block_index(geometry: WanGeometry, block: int, input_name: str = "motion_block") -> None:
    if not 0 <= block < geometry.num_blocks:
        raise ValueError(f"{input_name}: block index {block} is out of range; this Wan model has "
                         f"{geometry.num_blocks} blocks (valid 0..{geometry.num_blocks - 1}; the paper uses 14 of 30, "
                         f"about the middle).")


def token_grid(latent_shape, patch_size) -> tuple[int, int, int]:
    _, _, f, h, w = latent_shape
    pt, ph, pw = patch_size
    return -(-f // pt), -(-h // ph), -(-w // pw)


# ---- attention in gradient passes ----------------------------------------------------

_logged_attention = []


def _use_attention_with_backward(transformer_options: dict) -> None:
    """Gradient passes need an attention with a backward. SageAttention writes into a
    preallocated output (the gradient is silently dropped) and --use-flash-attention is a
    custom op without an autograd formula, so these passes use PyTorch's SDPA through
    ComfyUI's ``optimized_attention_override``; every other pass, and all sampling, keeps
    the user's backend (and any override a node installed)."""
    user_override = transformer_options.get("optimized_attention_override")

    def override(func, *args, **kwargs):
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:3]):
            return comfy_attention.attention_pytorch(*args, **kwargs)
        if user_override is not None:
            return user_override(func, *args, **kwargs)
        return func(*args, **kwargs)

    transformer_options["optimized_attention_override"] = override
    if not _logged_attention:
        _logged_attention.append(True)
        log.info("FastVMT: guidance gradient passes use PyTorch SDPA attention; sampling keeps %s",
                 getattr(comfy_attention.optimized_attention, "__name__", "ComfyUI's attention"))


# ---- Q/K capture with early exit ------------------------------------------------------

class _MotionBlockReached(Exception):
    """Ends a guidance pass at the motion block, carrying its head-averaged Q/K."""

    def __init__(self, q, k):
        super().__init__("FastVMT motion block reached")
        self.q, self.k = q, k


@dataclass
class PassCounter:
    """Counts DiT blocks evaluated in guidance passes (the motion block included)."""
    blocks: int = 0
    passes: int = 0


class _CallWith(torch.nn.Module):
    """Lets ``functional_call`` swap a module's parameters around an arbitrary call."""

    def __init__(self, module, fn):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(self.module, *args, **kwargs)


def _clone_param(p, compute_dtype):
    # fp8 weights are cloned in the compute dtype: ComfyUI's fast fp8 Linear (torch._scaled_mm,
    # taken only for fp8 weights) has no backward, its cast + F.linear path has. Values are
    # unchanged (the cast path casts to the same dtype) and scaled-fp8 scales still apply.
    # ComfyUI-GGUF's GGMLTensor.clone() returns itself; harmless, as its layers dequantise
    # into a fresh tensor on every call (tests/test_gguf_host.py).
    if p.dtype in comfy.model_management.FLOAT8_TYPES and compute_dtype is not None:
        return p.detach().to(compute_dtype)
    return p.detach().clone()


def _call_with_params(module, fn, *args, clone=(), skip=(), compute_dtype=None, **kwargs):
    """Call ``fn(module, ...)`` with its parameters detached (no autograd for weights)
    and those whose name starts with a ``clone`` prefix cloned: clones made outside
    inference mode are ordinary tensors that autograd may save. Names starting with
    a ``skip`` prefix are left alone."""
    params = {"module." + n: (_clone_param(p, compute_dtype) if n.startswith(clone) else p.detach())
              for n, p in module.named_parameters() if not (skip and n.startswith(skip))}
    return torch.func.functional_call(_CallWith(module, fn), params, args, kwargs)


# Parameters outside the blocks that lie on the latent's gradient path. VACE's context
# blocks take the patch-embedded latent and add into the hidden state after their block.
_OUTSIDE_BLOCKS_ON_X_PATH = ("patch_embedding.", "head.", "vace_blocks.")
# What the motion block needs for its queries/keys (mirrors _block_qk).
_QK_PARAMS = ("modulation", "norm1.", "self_attn.q.", "self_attn.k.", "self_attn.norm_q.", "self_attn.norm_k.")


def _diffusion_model_wrapper(executor, *args, state: dict, **kwargs):
    """In gradient passes, run the DiT with detached weights and cloned embedding/head
    parameters (see module doc); blocks clone their own parameters, one at a time.
    Also records what forward_orig passes to every block besides the patch args."""
    x = args[0]
    clip_fea = args[3] if len(args) > 3 else kwargs.get("clip_fea")
    state["context_img_len"] = clip_fea.shape[-2] if clip_fea is not None else None
    if not _wants_grad(x):
        return executor(*args, **kwargs)
    return _call_with_params(executor.class_obj, lambda _m, *a, **kw: executor(*a, **kw), *args,
                             clone=_OUTSIDE_BLOCKS_ON_X_PATH, skip=("blocks.",), compute_dtype=torch.float32,
                             **kwargs)


def _wants_grad(x) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _block_qk(block, x, e0, freqs):
    """The motion block's self-attention queries/keys after projection, RMSNorm and RoPE,
    averaged over heads per token: [B, S, head_dim]. Mirrors WanAttentionBlock.forward."""
    mod = comfy.model_management.cast_to(block.modulation, dtype=x.dtype, device=x.device)
    e = (mod + e0).chunk(6, dim=1) if e0.ndim < 4 else (mod.unsqueeze(0) + e0).unbind(2)
    y = torch.addcmul(wan_model.repeat_e(e[0], x), block.norm1(x), 1 + wan_model.repeat_e(e[1], x))
    attn = block.self_attn
    b, s = y.shape[:2]
    q = apply_rope1(attn.norm_q(attn.q(y)).view(b, s, attn.num_heads, attn.head_dim), freqs)
    k = apply_rope1(attn.norm_k(attn.k(y)).view(b, s, attn.num_heads, attn.head_dim), freqs)
    return q.float().mean(dim=2), k.float().mean(dim=2)


def _run_block(block, args, state, img):
    """The block's forward with the arguments forward_orig would give it. Called
    directly, not through ``original_block``: ComfyUI's closure looks up the loop's
    current block when called, which is a later block by the time checkpoint recomputes."""
    return block(img, context=args["txt"], e=args["vec"], freqs=args["pe"],
                 context_img_len=state.get("context_img_len"), transformer_options=args.get("transformer_options", {}))


def _gradient_block(block, args, state, keep_activations: bool):
    """A block in a gradient pass, parameters cloned inside. Under a per-block checkpoint
    (only its input is kept; recomputed in backward) unless activations are kept, in which
    case autograd keeps its saved tensors and its cloned weights until backward."""
    def run(img):
        return _call_with_params(block, lambda b, i: _run_block(b, args, state, i), img, clone=("",),
                                 compute_dtype=img.dtype)
    if keep_activations:
        return run(args["img"])
    return checkpoint(run, args["img"], use_reentrant=False)


def _pass_through_patch(block, counter: PassCounter, state: dict, keep_activations: bool):
    def patch(args, extra):
        counter.blocks += 1
        if not _wants_grad(args["img"]):
            return extra["original_block"](args)
        return {"img": _gradient_block(block, args, state, keep_activations)}
    return patch


def _capture_patch(block, counter: PassCounter):
    def patch(args, extra):
        counter.blocks += 1
        x = args["img"]
        if _wants_grad(x):
            q, k = _call_with_params(block, _block_qk, x, args["vec"], args["pe"], clone=_QK_PARAMS,
                                     compute_dtype=x.dtype)
        else:
            q, k = _block_qk(block, x, args["vec"], args["pe"])
        raise _MotionBlockReached(q, k)
    return patch


# Wrappers around the model call that belong to sampling steps, not to the model: step
# caches (core EasyCache; TeaCache/MagCache-style packs) hook these to skip or reuse DiT
# passes. Guidance passes run without them, so they see the plain blocks and leave the
# cache's state as the user's sampling steps left it.
_SAMPLING_STEP_WRAPPERS = (comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL,
                           comfy.patcher_extension.WrappersMP.CALC_COND_BATCH)


def _guidance_pass_options(model_options: dict, gradient: bool) -> dict:
    """A per-pass copy of the model options for a guidance pass:

    * without the sampling-step wrappers (above);
    * without TorchCompileModel's APPLY_MODEL wrapper, so the pass runs the eager DiT:
      per-pass patches and grad mode would recompile the graph on every pass (dynamo's
      recompile limit was hit within one guided step);
    * in a gradient pass, with an attention that has a backward.
    """
    opts = comfy.model_patcher.create_model_options_clone(model_options)
    to = opts.setdefault("transformer_options", {})
    wrappers = {kind: fns for kind, fns in to.get("wrappers", {}).items() if kind not in _SAMPLING_STEP_WRAPPERS}
    apply_model = comfy.patcher_extension.WrappersMP.APPLY_MODEL
    if COMPILE_KEY in wrappers.get(apply_model, {}):
        wrappers[apply_model] = {k: v for k, v in wrappers[apply_model].items() if k != COMPILE_KEY}
    to["wrappers"] = wrappers
    if gradient:
        _use_attention_with_backward(to)
    return opts


def capture_qk(base_model, conds, x, sigma, model_options, block_index: int, counter: PassCounter,
               exit_block: int | None = None, keep_activations: bool = False):
    """Run the model as the sampler does, stopping at ``block_index``; returns q, k [B, F, H, W, D].

    ``exit_block`` (benchmarks only) keeps evaluating blocks up to that index before
    stopping, to measure the cost of the released code's truncation; ``-1`` runs the
    whole DiT and head. ``keep_activations``: gradient passes skip the per-block recompute.
    """
    dm = base_model.diffusion_model
    opts = _guidance_pass_options(model_options, gradient=_wants_grad(x))
    captured, state = {}, {}
    stop_at = block_index if exit_block is None else exit_block
    last = len(dm.blocks) - 1 if stop_at < 0 else stop_at
    for i in range(last + 1):
        if i == block_index:
            patch = _capture_patch(dm.blocks[i], counter)
            if last > block_index or stop_at < 0:
                patch = _record_and_continue(dm.blocks[i], counter, captured, state, keep_activations)
        elif i > block_index and i == last and stop_at >= 0:
            patch = _stop_patch(counter, captured)
        else:
            patch = _pass_through_patch(dm.blocks[i], counter, state, keep_activations)
        opts = comfy.model_patcher.set_model_options_patch_replace(opts, patch, "dit", "double_block", i)
    comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY,
                                                 functools.partial(_diffusion_model_wrapper, state=state),
                                                 opts["transformer_options"])
    counter.passes += 1
    sigma_batch = sigma.reshape(1).to(x.device).expand(x.shape[0])
    try:
        comfy.samplers.calc_cond_batch(base_model, [conds], x, sigma_batch, opts)
    except _MotionBlockReached as hit:
        q, k = hit.q, hit.k
    else:
        if "qk" not in captured:
            raise RuntimeError(f"FastVMT: the Wan model finished without reaching block {block_index}; "
                               "another node may have replaced its blocks")
        q, k = captured["qk"]
    f, h, w = token_grid(x.shape, dm.patch_size)
    n = f * h * w
    # Variants that prepend reference tokens (ref_conv) keep the video tokens last.
    q, k = (q[:, -n:], k[:, -n:]) if getattr(dm, "ref_conv", None) is not None else (q[:, :n], k[:, :n])
    return q.reshape(-1, f, h, w, q.shape[-1]), k.reshape(-1, f, h, w, k.shape[-1])


def _record_and_continue(block, counter, captured, state, keep_activations: bool):
    def patch(args, extra):
        counter.blocks += 1
        x = args["img"]
        if not _wants_grad(x):
            captured["qk"] = _block_qk(block, x, args["vec"], args["pe"])
            return extra["original_block"](args)
        captured["qk"] = _call_with_params(block, _block_qk, x, args["vec"], args["pe"], clone=_QK_PARAMS,
                                           compute_dtype=x.dtype)
        return {"img": _gradient_block(block, args, state, keep_activations)}
    return patch


def _stop_patch(counter, captured):
    def patch(args, extra):
        counter.blocks += 1
        with torch.no_grad():  # evaluated for its cost only: the output is discarded
            extra["original_block"](args)
        raise _MotionBlockReached(*captured["qk"])
    return patch


# ---- image-to-video: held latent entries and the reference's image conditioning --------

@dataclass
class HeldEntries:
    """Latent entries a sampler holds fixed under a denoise mask (TI2V's start image,
    inpainting). The model sees x where the mask is 1 and the sampler's stand-in where it
    is 0: the clean latent (WAN22) or the latent re-noised to sigma (other models), as
    ComfyUI's KSamplerX0Inpaint builds its input."""
    mask: torch.Tensor                 # [B, C, F, H, W], prepared to the latent's shape
    noise: torch.Tensor
    latent: torch.Tensor               # model space
    mask_function: object = None       # model_options["denoise_mask_function"], applied as the sampler does
    mask_extra: dict | None = None

    def mask_at(self, sigma) -> torch.Tensor:
        if self.mask_function is None:
            return self.mask
        return self.mask_function(sigma, self.mask, extra_options=self.mask_extra or {})

    def model_input(self, base_model, x, sigma, mask) -> torch.Tensor:
        sigma_b = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)[:1].to(x.device).expand(x.shape[0])
        fixed = base_model.scale_latent_inpaint(x=x, sigma=sigma_b, noise=self.noise, latent_image=self.latent)
        return x * mask + fixed * (1.0 - mask)


_IMAGE_COND_KEYS = ("concat_latent_image", "concat_mask", "clip_vision_output")


def _clip_vision_output(tokens: torch.Tensor):
    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = tokens  # the only field Wan's extra_conds reads
    return out


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
        img = motion.image  # kind checked by check_motion_matches
        image_keys = {"concat_latent_image": img.concat_latent, "concat_mask": img.mask}
        if img.clip_vision is not None and any(c.get("clip_vision_output") is not None for c in gen_positive):
            image_keys["clip_vision_output"] = _clip_vision_output(img.clip_vision)
    elif kind == "first_frame" and denoise_mask is not None:
        check_masked_latent(motion, geometry)
        mask = comfy.sampler_helpers.prepare_mask(motion.image.mask, noise.shape, device)
        held = HeldEntries(mask=mask, noise=ref_noise, latent=ref_latent)
    else:  # text-to-video: as before image-to-video support, so T2V results are unchanged
        if motion.conditioning is None:
            return guider.conds["positive"], None
        processed = comfy.samplers.process_conds(
            base_model, noise, {"fastvmt_reference": comfy.sampler_helpers.convert_cond(motion.conditioning)},
            device, latent_image, denoise_mask, seed)
        return processed["fastvmt_reference"], None
    source = (comfy.sampler_helpers.convert_cond(motion.conditioning) if motion.conditioning is not None
              else [c.copy() for c in gen_positive])
    conds = []
    for c in source:
        # The generation's start image and control hints describe the generation, not the reference.
        c = {k: v for k, v in c.items() if k not in _IMAGE_COND_KEYS + ("control",)}
        c.update(image_keys)
        conds.append(c)
    processed = comfy.samplers.process_conds(base_model, noise, {"fastvmt_reference": conds}, device, ref_latent,
                                             held.mask if held is not None else None, seed)
    return processed["fastvmt_reference"], held


# ---- one guided outer step ------------------------------------------------------------

@dataclass
class GuidanceContext:
    """Everything a guided step needs, built once per sampling run."""
    base_model: object
    model_options: dict
    gen_conds: list
    ref_conds: list
    ref_latent: torch.Tensor          # processed (model space) clean reference latent
    ref_noise: torch.Tensor           # fixed-seed noise for re-noising the reference
    settings: FastVMTSettings
    counter: PassCounter = field(default_factory=PassCounter)
    progress: object = None           # callable(outer_step, inner_step, x) -> None
    exit_block: int | None = None     # capture_qk's form of settings.exit_block
    keep_activations: bool = False    # gradient passes skip the per-block recompute (plan_memory)
    gen_held: HeldEntries | None = None  # entries the sampler holds fixed in the generated latent
    ref_held: HeldEntries | None = None  # ... and in the reference (TI2V: its own first frame)
    ref_flows: dict = field(default_factory=dict)  # reference sigma -> MotionFlow (MotionTargets under controls)
    controls: object = None           # motion controls: fastvmt_core.MotionControls, None for plain FastVMT
    step_log: list = field(default_factory=list)


def _flow(settings: FastVMTSettings, q, k):
    if settings.mode == "AMF":
        return global_amf(q, k, temporal_span=None, tau=settings.tau)
    return sliding_window_amf(q, k, temporal_span=settings.temporal_span, window=settings.window,
                              tile=settings.tile, tau=settings.tau)


def reference_flows(ctx: GuidanceContext, sigma) -> tuple[object, float]:
    """Motion flow of the reference at this guided step and the sigma it was read at.

    "renoise": re-noised to the step's sigma, capped at ``reference_sigma_cap`` so the
    reference is never (near) pure noise; "clean": read once at the model's sigma_min.
    Flows are cached by sigma: steps above the cap share one reference pass.
    """
    s = ctx.settings
    if s.reference_noise == "clean":
        ref_sigma = float(ctx.base_model.model_sampling.sigma_min)
    else:
        ref_sigma = reference_sigma(float(sigma), s.reference_sigma_cap)
    if ref_sigma not in ctx.ref_flows:
        ctx.ref_flows[ref_sigma] = controls_core.motion_targets(_reference_flow_at(ctx, ref_sigma),
                                                                ctx.controls)  # motion controls
    return ctx.ref_flows[ref_sigma], ref_sigma


def _reference_flow_at(ctx, sigma):
    ms = ctx.base_model.model_sampling
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(1).to(ctx.ref_latent.device)
    x_ref = ms.noise_scaling(sigma, ctx.ref_noise, ctx.ref_latent, max_denoise=False)
    if ctx.ref_held is not None:
        x_ref = ctx.ref_held.model_input(ctx.base_model, x_ref, sigma, ctx.ref_held.mask_at(sigma))
    with torch.no_grad():
        q, k = capture_qk(ctx.base_model, ctx.ref_conds, x_ref, sigma, ctx.model_options, ctx.settings.motion_block,
                          ctx.counter, ctx.exit_block)
        return _flow(ctx.settings, q[0], k[0]).detach()


def no_gradient_message(base_model) -> str:
    """The error for a model whose forward does not carry a gradient back to the latent."""
    dm = base_model.diffusion_model
    linear = dm.blocks[0].self_attn.q
    fmt = (f"{type(dm).__name__}, weights {linear.weight.dtype} in {type(linear).__module__}."
           f"{type(linear).__qualname__}, compute dtype {base_model.manual_cast_dtype or base_model.get_dtype()}")
    return ("model: FastVMT needs the gradient of the motion block's queries/keys with respect to the latent, "
            f"and this model's forward does not carry one ({fmt}). A weight format, kernel or model patch runs "
            "without autograd. Load the model with 'Load Diffusion Model' and weight_dtype 'default' (or "
            "ComfyUI-GGUF's loader), and remove nodes that wrap the model call between the loader and the "
            "sampler; attention backends (SageAttention, flash) are handled by FastVMT.")


def guide_latent(ctx: GuidanceContext, x: torch.Tensor, sigma, step_index: int) -> torch.Tensor:
    """Optimise the latent at one guided outer step; returns the new latent (same dtype)."""
    s = ctx.settings
    start = time.perf_counter()
    with torch.inference_mode(False):
        ref, ref_sigma = reference_flows(ctx, sigma)
        sigma_t = torch.as_tensor(sigma).reshape(1)
        held = ctx.gen_held
        # A clone made here is an ordinary tensor: autograd saves it (the mask came from inference mode).
        mask = held.mask_at(sigma_t.to(x.device)).clone() if held is not None else None
        region = controls_core.latent_region(ctx.controls, x)  # motion controls: generation mask, or None

        def loss_fn(xv):
            xv = controls_core.confine(xv, region)  # motion controls: no gradient outside the generation mask
            # Held entries reach the model as the sampler shows them, so they get no gradient.
            x_in = held.model_input(ctx.base_model, xv, sigma_t, mask) if held is not None else xv
            q, k = capture_qk(ctx.base_model, ctx.gen_conds, x_in, sigma_t, ctx.model_options, s.motion_block,
                              ctx.counter, ctx.exit_block, ctx.keep_activations)
            if not q.requires_grad:
                raise ValueError(no_gradient_message(ctx.base_model))
            losses, parts = [], {"amf": 0.0, "window": 0.0}
            for b in range(q.shape[0]):  # batch of latents: one flow each, same reference
                loss, p = controls_core.controlled_loss(ref, _flow(s, q[b], k[b]), lambda_amf=s.lambda_amf,
                                                        lambda_window=s.lambda_window, alpha=s.alpha)
                losses.append(loss)
                parts = {key: parts[key] + p[key] for key in parts}
            return torch.stack(losses).sum(), parts

        def on_step(j, stats, latent):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if ctx.progress is not None:
                ctx.progress(step_index, j, latent)

        x_opt, stats = optimize_latent(x.detach().clone(), loss_fn, steps=s.inner_steps,
                                       interval=s.effective_interval, lr_start=s.lr_start, lr_end=s.lr_end,
                                       on_step=on_step)
        if mask is not None:  # AdamW's weight decay would still move them
            x_opt = x_opt * mask + x.float() * (1.0 - mask)
        x_opt = controls_core.keep_outside(x_opt, x, region)  # motion controls
    ctx.step_log.append({"step": step_index, "sigma": float(sigma), "reference_sigma": ref_sigma,
                         "losses": stats.losses, "gradient_evaluations": stats.gradient_evaluations,
                         "stopped": stats.stop_reason,
                         "seconds": time.perf_counter() - start,
                         **controls_core.region_change(x_opt, x, region)})  # motion controls
    if stats.stopped_early:
        log.warning("FastVMT: guided step %d stopped early (%s); kept the last finite latent",
                    step_index, stats.stop_reason)
    return x_opt.to(dtype=x.dtype)


# ---- memory: estimate, choose keep_activations, reserve --------------------------------

def pass_geometry(base_model, latent_shape) -> PassGeometry:
    """fastvmt_core.memory's view of this model and latent."""
    dm = base_model.diffusion_model
    block = dm.blocks[0]
    compute = base_model.manual_cast_dtype or base_model.get_dtype()
    size = comfy.model_management.dtype_size(compute)
    f, h, w = token_grid(latent_shape, dm.patch_size)
    # p.shape, not numel(): quantised (GGUF) tensors report their logical shape there.
    params = sum(math.prod(p.shape) for p in block.parameters())
    return PassGeometry(frames=f, height=h, width=w, dim=dm.dim, ffn_dim=block.ffn[0].out_features,
                        num_heads=dm.num_heads, block_params=params, act_bytes=size, weight_bytes=size,
                        batch=latent_shape[0])


@dataclass
class MemoryPlan:
    estimate: int                # bytes of one gradient pass in the chosen mode
    keep_activations: bool
    free_before: int             # device memory free before the reservation
    offloaded: int = 0           # model weight bytes ComfyUI moved off the device to make room
    restored: int = 0            # ... and loaded back after the guided steps

    def describe(self) -> str:
        mode = "kept" if self.keep_activations else "recomputed per block"
        text = (f"gradient pass about {self.estimate / 2**20:.0f} MiB (activations {mode}); "
                f"{self.free_before / 2**20:.0f} MiB were free")
        if self.offloaded:
            text += (f"; ComfyUI offloaded {self.offloaded / 2**20:.0f} MiB of weights for it and loaded "
                     f"{self.restored / 2**20:.0f} MiB back after the guided steps")
        return text


def plan_memory(model_patcher, latent_shape, settings: FastVMTSettings) -> MemoryPlan:
    """Estimate a gradient pass, pick keep_activations, and reserve the memory through
    ComfyUI's model management, so the pass does not run out of memory on a fully loaded
    card: other models are freed first (``free_memory``), then part of this one is
    offloaded (``partially_unload``); ``restore_after_guidance`` loads it back."""
    device = model_patcher.load_device
    geometry = pass_geometry(model_patcher.model, latent_shape)
    kept = gradient_pass_memory(geometry, settings, keep_activations=True)
    recomputed = gradient_pass_memory(geometry, settings, keep_activations=False)
    free = int(comfy.model_management.get_free_memory(device))
    reserve = comfy.model_management.extra_reserved_memory()
    if settings.keep_activations == "always":
        keep = True
    elif settings.keep_activations == "never":
        keep = False
    else:
        keep = kept.total + reserve <= free
    estimate = (kept if keep else recomputed).total
    plan = MemoryPlan(estimate, keep, free)
    need = estimate + reserve
    if need > free:
        mm = comfy.model_management
        ours = [m for m in mm.current_loaded_models if m.model is model_patcher]
        mm.free_memory(need, device, keep_loaded=ours)  # other models first, as ComfyUI does
        short = need - int(mm.get_free_memory(device))
        if short > 0 and ours:
            # Part of this model, never all of it: a full unload would also undo its weight
            # patches (LoRA) mid-sampling. Offloaded layers run through ComfyUI's low-VRAM path.
            plan.offloaded = model_patcher.partially_unload(model_patcher.offload_device, short)
    return plan


def restore_after_guidance(model_patcher, plan: MemoryPlan) -> None:
    """Load back what the reservation offloaded, for the unguided steps (ComfyUI's loader
    decides how much fits, as at the start of sampling)."""
    if plan.offloaded:
        before = model_patcher.loaded_size()
        comfy.model_management.load_models_gpu([model_patcher])
        plan.restored = max(0, model_patcher.loaded_size() - before)


# ---- the sampler function and the wrapper ---------------------------------------------

# k-diffusion samplers whose default noise is a Brownian tree over the call's sigma range
# (name -> built on the CPU); every other sampler with a noise_sampler argument draws from
# default_noise_sampler(x, seed), one generator for the whole call.
_BROWNIAN_TREE_SAMPLERS = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_2m_sde_heun": True,
    "sample_dpmpp_3m_sde": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_2m_sde_heun_gpu": False, "sample_dpmpp_3m_sde_gpu": False,
}
# Samplers that cannot take a single step on their own: UniPC with two sigmas runs at
# order 0 and returns x unchanged. Their guided steps use Euler, which for a flow model
# is the first-order step of the same family (UniPC / DPM-Solver++ order 1 = DDIM = Euler).
_NO_SINGLE_STEP = ("sample_unipc", "sample_unipc_bh2")


def _function_name(fn) -> str:
    return getattr(getattr(fn, "func", fn), "__name__", "")


def shared_noise_sampler(sampler_function, x, sigmas, seed):
    """The noise sampler the stock function would build for the whole call, or None.

    Passed to every chunk of a guided run, so chunks continue one noise stream instead of
    each reseeding it: with a zero learning rate the guided run draws exactly the plain
    run's noise.
    """
    try:
        params = inspect.signature(sampler_function).parameters
    except (TypeError, ValueError):
        return None
    if "noise_sampler" not in params:
        return None
    cpu = _BROWNIAN_TREE_SAMPLERS.get(_function_name(sampler_function))
    if cpu is None:
        return k_sampling.default_noise_sampler(x, seed=seed)
    positive = sigmas[sigmas > 0]
    return k_sampling.BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=cpu)


def single_step_function(sampler_function):
    """The function that takes the guided steps: the sampler itself, or Euler where it cannot."""
    if _function_name(sampler_function) in _NO_SINGLE_STEP:
        return k_sampling.sample_euler
    return sampler_function


def guided_sampling(model, x, sigmas, extra_args=None, callback=None, disable=None, *, inner, guide,
                    n_guided: int, after_guidance=None, **options):
    """k-diffusion-style sampler: for each of the first ``n_guided`` steps, guide the latent
    and take one step; then ``after_guidance()`` and the stock sampler over the remaining sigmas.

    * One noise stream for the whole call (``shared_noise_sampler``).
    * Multistep samplers restart their history after each guided step and once more
      when the unguided remainder starts; that restart is the only difference from
      plain sampling when the latent is not changed.
    * Samplers that cannot take one step alone take their guided steps with Euler.
    """
    extra_args = {} if extra_args is None else extra_args
    if "noise_sampler" not in options:
        noise_sampler = shared_noise_sampler(inner, x, sigmas, extra_args.get("seed"))
        if noise_sampler is not None:
            options = {**options, "noise_sampler": noise_sampler}
    step = single_step_function(inner)
    step_options = options if step is inner else {}

    def shifted(offset):
        if callback is None:
            return None
        return lambda d: callback({**d, "i": d["i"] + offset})

    for k in range(n_guided):
        x = guide(x, sigmas[k], k)
        x = step(model, x, sigmas[k:k + 2], extra_args=extra_args, callback=shifted(k), disable=True,
                 **step_options)
    if after_guidance is not None:
        after_guidance()
    rest = sigmas[n_guided:]
    if len(rest) > 1:  # one step left: the guided-step function, which can take it alone
        fn, fn_options = (inner, options) if len(rest) > 2 else (step, step_options)
        x = fn(model, x, rest, extra_args=extra_args, callback=shifted(n_guided), disable=disable, **fn_options)
    return x


class _Progress:
    """One progress bar for outer and inner steps: ComfyUI's callback sees a larger total."""

    def __init__(self, callback, n_steps, n_guided, inner_steps):
        self.callback, self.n_guided, self.inner = callback, n_guided, inner_steps
        self.total = n_steps + n_guided * inner_steps

    def _position(self, outer_step):
        return outer_step + self.inner * min(outer_step + 1, self.n_guided)

    def outer(self, step, x0, x, total_steps):
        if self.callback is not None:
            self.callback(self._position(step), x0, x, self.total)

    def inner_step(self, outer_step, j, latent):
        if self.callback is not None:
            # The preview shows the latent being optimised (a guidance pass computes no
            # denoised estimate: it stops inside the motion block).
            self.callback(outer_step * (self.inner + 1) + j, latent, latent, self.total)


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
                         "frames), or make the empty latent match the reference.")
    if geometry.image_to_video == "concat":
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
    if not any(isinstance(e, dict) and e.get("concat_latent_image") is not None for e in entries):
        raise ValueError(f"{where}: this Wan image-to-video model has no start image in its conditioning. Connect "
                         "the image to start_image on WanImageToVideo (and its positive / negative outputs to the "
                         "sampler); FastVMT conditions the reference pass on the reference's first frame the same "
                         "way.")


def check_masked_latent(motion: MotionReference, geometry: WanGeometry, where: str = "motion") -> None:
    """A TI2V generation (noise mask on the latent) needs the reference's first-frame conditioning."""
    if geometry.image_to_video == "first_frame" and motion.image is None:
        raise ValueError(f"{where}: this Wan 2.2 TI2V generation holds its start image under a noise mask "
                         "(Wan22ImageToVideoLatent), but the motion was extracted without image-to-video "
                         "conditioning (an older motion file, or another model). Re-extract it with Extract Motion "
                         "connected to this model.")


def _capture_exit_block(settings: FastVMTSettings, geometry: WanGeometry) -> int | None:
    """settings.exit_block -> capture_qk's exit_block (None: early exit, -1: whole DiT)."""
    if settings.exit_block < 0 or settings.exit_block == settings.motion_block:
        return None
    return -1 if settings.exit_block >= geometry.num_blocks - 1 else settings.exit_block


def sigma_to_percent(model_sampling, sigma: float) -> float:
    """Position of ``sigma`` in the denoising process (0 = full noise, 1 = clean): the
    inverse of ComfyUI's ``model_sampling.percent_to_sigma``, by bisection, so it holds
    for every model sampling type (Wan's is the shifted flow)."""
    sigma = float(sigma)
    if sigma <= 0.0:
        return 1.0
    if sigma >= float(model_sampling.percent_to_sigma(0.0)):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(48):  # 2^-48: far below the 1/1000 spacing of the model's timesteps
        mid = 0.5 * (lo + hi)
        if float(model_sampling.percent_to_sigma(mid)) > sigma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class GuidedRange:
    """Where one sampler call sits in the denoising process and which of its steps are guided."""
    start: float        # percent where the process started (0: from full noise)
    end: float          # percent where the guided range ends
    call_from: float    # percent of this call's first sigma
    call_to: float      # percent of its last sigma
    n_steps: int
    n_guided: int

    def describe(self) -> str:
        where = f"this call covers {self.call_from:.0%}-{self.call_to:.0%} of denoising"
        guided = f"the guided range is {self.start:.0%}-{self.end:.0%}"
        if self.n_guided:
            return f"{where}; {guided}: steps 1-{self.n_guided} of its {self.n_steps} are guided"
        return f"{where}; {guided}: no step of this call lies in it, so it ran plain sampling"


def guided_range(model_sampling, sigmas, noise, fraction: float) -> GuidedRange:
    """The guided share of the whole process, located in this call's sigmas.

    A call given zero noise (KSamplerAdvanced with add_noise disabled, DisableNoise)
    continues a run that started from full noise, e.g. the second half of a split or
    Wan 2.2's low-noise expert; any other call starts the process where its noise is
    added (0 for text-to-video, later for a partial denoise).
    """
    percents = [sigma_to_percent(model_sampling, s) for s in sigmas.tolist()]
    start = percents[0] if bool(torch.count_nonzero(noise)) else 0.0
    end = guided_end_percent(start, fraction)
    n_steps = len(percents) - 1
    return GuidedRange(start, end, percents[0], percents[-1], n_steps, guided_prefix(percents, end))


def fastvmt_sampler_wrapper(executor, guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                            disable_pbar, *, motion: MotionReference, settings: FastVMTSettings,
                            report: dict | None = None, controls=None):
    sampler = executor.class_obj
    base_model = guider.inner_model
    plan = guided_range(base_model.model_sampling, sigmas, noise, settings.guided_fraction)
    if plan.n_guided == 0:
        text = f"FastVMT {settings.mode}: {plan.describe()}"
        log.info("%s", text)
        if report is not None:
            report.update({"text": text, "steps": [], "n_guided": 0, "range": dataclasses.asdict(plan)})
        return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
    if not isinstance(sampler, comfy.samplers.KSAMPLER):
        raise ValueError(f"FastVMT guidance works with ComfyUI's k-diffusion samplers (KSAMPLER); this sampler is a "
                         f"{type(sampler).__name__}. Pick a sampler from KSamplerSelect or the KSampler list.")
    geometry = wan_geometry(guider.model_patcher)
    check_motion_matches(motion, geometry, noise.shape)
    device = noise.device
    n_steps, n_guided = plan.n_steps, plan.n_guided

    ref_latent = base_model.process_latent_in(motion.latent.to(device=device, dtype=torch.float32))
    gen = torch.Generator(device="cpu").manual_seed(settings.reference_seed)
    ref_noise = torch.randn(ref_latent.shape, generator=gen, dtype=torch.float32).to(device)
    ref_conds, ref_held = reference_conditioning(guider, motion, geometry, noise, ref_latent, ref_noise, latent_image,
                                                 denoise_mask, extra_args.get("seed"))
    gen_held = None
    if denoise_mask is not None:
        model_options = extra_args["model_options"]
        gen_held = HeldEntries(mask=denoise_mask, noise=noise, latent=latent_image,
                               mask_function=model_options.get("denoise_mask_function"),
                               mask_extra={"model": guider, "sigmas": sigmas})

    memory = plan_memory(guider.model_patcher, noise.shape, settings)
    log.info("FastVMT: %s", memory.describe())
    progress = _Progress(callback, n_steps, n_guided, settings.inner_steps)
    ctx = GuidanceContext(base_model=base_model, model_options=extra_args["model_options"],
                          gen_conds=guider.conds["positive"], ref_conds=ref_conds, ref_latent=ref_latent,
                          ref_noise=ref_noise, settings=settings, progress=progress.inner_step,
                          exit_block=_capture_exit_block(settings, geometry), keep_activations=memory.keep_activations,
                          gen_held=gen_held, ref_held=ref_held, controls=controls)  # motion controls
    guided = copy.copy(sampler)
    guided.sampler_function = functools.partial(
        guided_sampling, inner=sampler.sampler_function, n_guided=n_guided,
        guide=lambda x, sigma, k: guide_latent(ctx, x, sigma, k),
        after_guidance=lambda: restore_after_guidance(guider.model_patcher, memory))
    start = time.perf_counter()
    try:
        out = comfy.patcher_extension.WrapperExecutor.new_class_executor(
            guided.sample, guided, executor.wrappers, executor.idx + 1
        ).execute(guider, sigmas, extra_args, progress.outer if callback is not None else None, noise,
                  latent_image, denoise_mask, disable_pbar)
    finally:
        summary = _summary(ctx, plan, time.perf_counter() - start)
        summary["memory"] = dataclasses.asdict(memory)
        summary["text"] += f"\n  memory: {memory.describe()}"
        image_text = _image_to_video_text(geometry, motion, ref_conds, ref_held, gen_held)
        if image_text:
            summary["text"] += f"\n  {image_text}"
        lines, summary["controls"] = controls_core.controls_summary(controls, ctx.step_log)  # motion controls
        summary["text"] += "".join(f"\n  {line}" for line in lines)
        if report is not None:
            report.update(summary)
    log.info("%s", summary["text"])
    return out


def _image_to_video_text(geometry, motion, ref_conds, ref_held, gen_held) -> str:
    """One line on what the image-to-video passes were given, or "" for text-to-video."""
    parts = []
    if geometry.image_to_video == "concat":
        clip = any("clip_fea" in c.get("model_conds", {}) for c in ref_conds)
        parts.append("reference pass conditioned on its own first frame"
                     + (" (concat latent and CLIP-vision tokens)" if clip else " (concat latent)"))
    if ref_held is not None:
        parts.append("reference pass holds its own first latent frame clean")
    if gen_held is not None:
        held = float((gen_held.mask == 0).float().mean())
        parts.append(f"{held:.0%} of the latent is held by the noise mask and left unchanged by guidance")
    return ("image-to-video: " + "; ".join(parts)) if parts else ""


def _summary(ctx: GuidanceContext, plan: GuidedRange, seconds) -> dict:
    s = ctx.settings
    guidance_s = sum(e["seconds"] for e in ctx.step_log)
    first = [e["losses"][0] for e in ctx.step_log if e["losses"]]
    last = [e["losses"][-1] for e in ctx.step_log if e["losses"]]
    n_steps, n_guided = plan.n_steps, plan.n_guided
    lines = [f"FastVMT {s.mode}: guided {len(ctx.step_log)}/{n_guided} of {n_steps} steps, "
             f"{s.inner_steps} inner steps, gradient every {s.effective_interval} -> "
             f"{sum(e['gradient_evaluations'] for e in ctx.step_log)} gradient passes, "
             f"{ctx.counter.passes} DiT passes ({ctx.counter.blocks} block evaluations, motion block "
             f"{s.motion_block})",
             f"  {plan.describe()}",
             f"  guidance {guidance_s:.1f}s of {seconds:.1f}s sampling"]
    for e in ctx.step_log:
        losses = ", ".join(f"{v:.4g}" for v in e["losses"])
        lines.append(f"  step {e['step']}: sigma {e['sigma']:.3f} (reference at {e['reference_sigma']:.3f}), "
                     f"loss [{losses}], {e['seconds']:.1f}s"
                     + (f" (stopped: {e['stopped']})" if e["stopped"] else ""))
    return {"text": "\n".join(lines), "steps": list(ctx.step_log), "block_evaluations": ctx.counter.blocks,
            "dit_passes": ctx.counter.passes, "guidance_seconds": guidance_s, "sampling_seconds": seconds,
            "first_losses": first, "last_losses": last, "n_guided": n_guided, "range": dataclasses.asdict(plan)}


def apply_fastvmt(model_patcher, motion: MotionReference, settings: FastVMTSettings | None, *,
                  report: dict | None = None, masks=(None, None)):
    """A clone of ``model_patcher`` whose sampling runs FastVMT guidance; the input is untouched.
    ``masks``: the optional (reference_mask, generation_mask) of the motion controls."""
    resolved = resolve_settings(motion, settings)
    # Channels and block index now; the latent size is checked once the sampled latent is known.
    geometry = wan_geometry(model_patcher)
    check_motion_matches(motion, geometry, motion.latent.shape)
    # motion controls: masks fitted to the reference's (= the generation's) token grid, before sampling
    controls = controls_core.build_controls(resolved, *masks, motion.latent, geometry.patch_size)
    clone = model_patcher.clone()
    if resolved.guided:
        clone.add_wrapper_with_key(
            comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY,
            functools.partial(fastvmt_sampler_wrapper, motion=motion, settings=resolved, report=report,
                              controls=controls))  # motion controls
    return clone, resolved
