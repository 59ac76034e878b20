"""Every ComfyUI internal the sampler hook relies on, each with why (ComfyUI 0.3.64; call
shapes of v0.38 read and simulated in tests/test_comfy_forward_compat_host.py).

The other modules of ``nodes/wan`` reach ComfyUI only through this one, so a ComfyUI
release that moves one of these names breaks here, and tests/test_comfy_compat_host.py
says which. Module attributes are looked up at call time (tests and other packs patch
them, e.g. ``model_management.get_free_memory``).

Used directly, as ComfyUI's own nodes use them: a wrapper's ``executor(...)`` and
``executor.class_obj``; KSAMPLER.sample's ``extra_args["model_options"]`` and ``["seed"]``;
the k-diffusion sampler-function call ``fn(model, x, sigmas, extra_args=, callback=,
disable=, **options)`` and its callback dict's ``"i"``; ``guider.inner_model``, ``.conds``,
``.original_conds``, ``.model_patcher``; the base model's ``diffusion_model``,
``model_sampling`` (``noise_scaling``, ``percent_to_sigma``, ``sigma_min``),
``latent_format``, ``process_latent_in``, ``scale_latent_inpaint``, ``manual_cast_dtype``,
``get_dtype()``; the patcher's ``clone``, ``load_device``, ``offload_device``,
``partially_unload``, ``loaded_size``; the Wan DiT's ``blocks``, ``dim``, ``num_heads``,
``patch_size``, ``img_emb``, ``ref_conv``, ``patch_embedding`` and a block's ``ffn``.
"""

from __future__ import annotations

import copy
import inspect

import torch

import comfy.clip_vision
import comfy.context_windows
import comfy.ldm.modules.attention as comfy_attention
import comfy.ldm.wan.model as wan_model
import comfy.model_base
import comfy.model_management as model_management
import comfy.model_patcher
import comfy.patcher_extension as patcher_extension
import comfy.sampler_helpers
import comfy.samplers
from comfy.k_diffusion import sampling as k_sampling
from comfy.ldm.flux.math import apply_rope1
from comfy_api.torch_helpers.torch_compile import COMPILE_KEY

# ---- wrappers ------------------------------------------------------------------------

WRAPPER_KEY = "fastvmt"  # our key in each of ComfyUI's per-kind wrapper dicts
# Wraps KSAMPLER.sample: the one call that sees a run's sigmas, noise and sampler together.
SAMPLER_SAMPLE = patcher_extension.WrappersMP.SAMPLER_SAMPLE
# Wrappers that belong to sampling steps, not to the model: step caches (core EasyCache,
# TeaCache/MagCache-style packs) hook these to skip or reuse DiT passes; guidance passes drop them.
SAMPLING_STEP_WRAPPERS = (patcher_extension.WrappersMP.DIFFUSION_MODEL, patcher_extension.WrappersMP.CALC_COND_BATCH)
# TorchCompileModel's compiled forward is the APPLY_MODEL wrapper under COMPILE_KEY.
_APPLY_MODEL = patcher_extension.WrappersMP.APPLY_MODEL
# transformer_options entry that ComfyUI's attention functions (wrap_attn) call instead of themselves.
_ATTENTION_OVERRIDE = "optimized_attention_override"


def add_sampler_wrapper(model_patcher, fn) -> None:
    """Our SAMPLER_SAMPLE wrapper on a (cloned) ModelPatcher."""
    model_patcher.add_wrapper_with_key(SAMPLER_SAMPLE, WRAPPER_KEY, fn)


def continue_sampler_chain(executor, sampler, *args, **kwargs):
    """What ``executor(*args, **kwargs)`` does (the wrappers after ours, then ``sample``), with
    our ``sampler`` in place of the one ComfyUI built: WrapperExecutor has no public way to
    swap its class_obj, so the chain from our position on (``idx + 1``) is rebuilt."""
    return patcher_extension.WrapperExecutor.new_class_executor(
        sampler.sample, sampler, executor.wrappers, executor.idx + 1).execute(*args, **kwargs)


def guidance_pass_options(model_options: dict) -> dict:
    """A per-pass copy of the model options without the sampling-step wrappers and without
    TorchCompileModel's wrapper (per-pass patches and grad mode would recompile the graph on
    every pass: dynamo's recompile limit was hit within one guided step), and without the
    context handler: a pass is one window already, and the handler's step bookkeeping fails
    at a reference sigma that is not one of the sampler's."""
    opts = comfy.model_patcher.create_model_options_clone(model_options)
    to = opts.setdefault("transformer_options", {})
    wrappers = {kind: fns for kind, fns in to.get("wrappers", {}).items() if kind not in SAMPLING_STEP_WRAPPERS}
    if COMPILE_KEY in wrappers.get(_APPLY_MODEL, {}):
        wrappers[_APPLY_MODEL] = {k: v for k, v in wrappers[_APPLY_MODEL].items() if k != COMPILE_KEY}
    to["wrappers"] = wrappers
    opts.pop(_CONTEXT_HANDLER, None)
    return opts


# ---- context windows -------------------------------------------------------------------
# WAN Context Windows (Manual) puts an IndexListContextHandler here; calc_cond_batch then runs
# each window of latent frames separately. Guidance passes run their windows themselves
# (nodes/wan/context_windows.py), so their model options go without it.
_CONTEXT_HANDLER = "context_handler"
LATENT_FRAME_DIM = 2   # Wan latents [B, C, F, H, W]: the dim a Wan context handler windows


def context_handler(model_options: dict):
    """The run's context handler, or None."""
    return model_options.get(_CONTEXT_HANDLER)


def handler_windows(handler, base_model, conds: list, x, sigma, model_options: dict) -> list[list[int]] | None:
    """The index lists of the windows ``handler`` runs on latent ``x`` at ``sigma`` (one of
    the call's sample_sigmas), as its execute() would, or None when it runs the whole latent.
    Raises TypeError for a handler that is not ComfyUI's index-list one."""
    if not isinstance(handler, comfy.context_windows.IndexListContextHandler):
        raise TypeError(type(handler).__name__)
    timestep = torch.as_tensor(sigma, dtype=torch.float32).reshape(1)   # on the sample_sigmas' device
    if not handler.should_use_context(base_model, [conds], x, timestep, model_options):
        return None
    handler.set_step(timestep, model_options)   # the uniform schedules shift their windows per step
    return [list(w.index_list) for w in handler.get_context_windows(base_model, x, model_options)]


def handler_dim(handler) -> int:
    return handler.dim


def window_conds(handler, conds: list, x, frames: list[int]) -> list:
    """``conds`` (processed, for the whole latent ``x``) cut to one window's frames, as the
    handler cuts them for its own windows."""
    window = comfy.context_windows.IndexListContextWindow(list(frames), dim=handler.dim)
    return handler.get_resized_cond(conds, x, window)


def frame_conds_left_whole(window_cond: list, frames: int) -> list[str]:
    """Names of the model conds (``model_conds``: CONDRegular & co., each holding ``.cond``)
    of one window's cut conds that still span the whole video's ``frames`` latent frames:
    conds the handler does not cut (ComfyUI 0.3.64 leaves WanImageToVideo's c_concat and
    WAN22's denoise_mask whole)."""
    left = []
    for entry in window_cond:
        for name, value in entry.get("model_conds", {}).items():
            tensor = getattr(value, "cond", None)
            if isinstance(tensor, torch.Tensor) and tensor.ndim == 5 and tensor.shape[LATENT_FRAME_DIM] == frames:
                left.append(name)
    return left


def with_pass_window(model_options: dict, handler, frames) -> dict:
    """A copy of the model options exposing one window to the model, as calc_cond_batch
    does during its windows (transformer_options["context_window"])."""
    opts = comfy.model_patcher.create_model_options_clone(model_options)
    opts.setdefault("transformer_options", {})["context_window"] = \
        comfy.context_windows.IndexListContextWindow(list(frames), dim=handler.dim)
    return opts


def add_pass_wrapper(model_options: dict, fn) -> None:
    """A DIFFUSION_MODEL wrapper (around WanModel._forward) for one guidance pass."""
    patcher_extension.add_wrapper_with_key(patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, fn,
                                           model_options["transformer_options"])


def clip_tokens(args, kwargs):
    """The CLIP-vision tokens of a WanModel._forward(x, timestep, context, clip_fea, ...) call."""
    return args[3] if len(args) > 3 else kwargs.get("clip_fea")


def dit_transformer_options(args, kwargs) -> dict:
    """The transformer_options of a WanModel._forward(x, timestep, context, clip_fea,
    time_dim_concat, transformer_options, **kwargs) call."""
    return (args[5] if len(args) > 5 else kwargs.get("transformer_options")) or {}


# ---- multi-GPU (v0.38) ---------------------------------------------------------------

# v0.38's MultiGPU node puts per-device model clones here; _calc_cond_batch then runs
# _calc_cond_batch_multigpu, whose model calls run under torch.no_grad() (0.3.64 has neither).
_MULTIGPU_CLONES = "multigpu_clones"
# ... and each of those calls gets this transformer_options entry (its device).
_MULTIGPU_DEVICE = "multigpu_thread_device"


def multigpu_cond_batching(model_options: dict) -> bool:
    """Whether calc_cond_batch would split this call across GPUs, without autograd."""
    return _MULTIGPU_CLONES in model_options


def multigpu_model_call(transformer_options: dict) -> bool:
    """Whether this model call is one of _calc_cond_batch_multigpu's (run under no_grad)."""
    return _MULTIGPU_DEVICE in transformer_options


# ---- attention -----------------------------------------------------------------------

def attention_override(model_options: dict):
    """The attention override a node installed, or None."""
    return model_options["transformer_options"].get(_ATTENTION_OVERRIDE)


def set_attention_override(model_options: dict, override) -> None:
    """``override(func, *args, **kwargs)`` runs instead of every optimized_attention call."""
    model_options["transformer_options"][_ATTENTION_OVERRIDE] = override


def sdpa_attention(*args, **kwargs):
    """ComfyUI's PyTorch-SDPA attention, which has a backward."""
    return comfy_attention.attention_pytorch(*args, **kwargs)


def attention_backend_name() -> str:
    return getattr(comfy_attention.optimized_attention, "__name__", "ComfyUI's attention")


# ---- Wan DiT blocks ------------------------------------------------------------------

def is_wan_model(diffusion_model) -> bool:
    return isinstance(diffusion_model, wan_model.WanModel)


def is_wan22(base_model) -> bool:
    """ComfyUI's WAN22 model class: Wan 2.2 TI2V 5B, which holds its start image under a noise mask."""
    return isinstance(base_model, comfy.model_base.WAN22)


def add_block_patch(model_options: dict, patch, index: int) -> dict:
    """WanModel.forward_orig calls ``patch(args, extra)`` instead of block ``index``."""
    return comfy.model_patcher.set_model_options_patch_replace(model_options, patch, "dit", "double_block", index)


def block_inputs(args: dict):
    """forward_orig's args for a block: hidden state x, time modulation e0, RoPE freqs."""
    return args["img"], args["vec"], args["pe"]


def block_output(x) -> dict:
    return {"img": x}


def block_args_for_recompute(args: dict) -> dict:
    """The block's args with a copy of transformer_options of its own: v0.38's forward_orig
    sets ``transformer_options["block_index"]`` in one dict shared by all blocks, so a block
    recomputed in backward (checkpoint) would otherwise see the last block's index."""
    to = args.get("transformer_options")
    return args if to is None else {**args, "transformer_options": dict(to)}


def prepended_tokens(diffusion_model, dit_kwargs: dict) -> int:
    """Tokens forward_orig puts before the latent's own: a Wan Fun reference image
    (``reference_latent``, one token per ref_conv patch of its H x W), when a cond gives one."""
    ref = dit_kwargs.get("reference_latent")
    if getattr(diffusion_model, "ref_conv", None) is None or ref is None:
        return 0
    _, ph, pw = diffusion_model.patch_size
    return (ref.shape[-2] // ph) * (ref.shape[-1] // pw)


def main_token_inputs(x, e0, freqs, start: int, count: int):
    """Block inputs (hidden state, time modulation, RoPE freqs) cut to the latent's own
    ``count`` tokens from ``start``. forward_orig's sequence is [prepended reference tokens]
    [the latent's grid tokens][appended tokens: time_dim_concat frames, v0.38's
    context_latents]; freqs has one row per token (appended streams have their own RoPE
    rows), and per-token modulation is expanded as the block does (repeat_e) before the cut."""
    s = x.shape[1]
    if start + count > s or freqs.shape[1] != s:
        raise RuntimeError(f"FastVMT: a Wan block got {s} tokens with RoPE for {freqs.shape[1]}; the latent has "
                           f"{count} tokens from token {start}. This ComfyUI lays out Wan's tokens in a way FastVMT "
                           "does not know (nodes/wan/comfy_compat.py, main_token_inputs).")
    if start == 0 and count == s:
        return x, e0, freqs
    if e0.ndim == 4 and e0.shape[1] > 1:  # per-token (or per-frame) modulation
        e0 = wan_model.repeat_e(e0, x)[:, start:start + count]
    return x[:, start:start + count], e0, freqs[:, start:start + count]


def run_original_block(args: dict, extra: dict):
    return extra["original_block"](args)


def run_block(block, args: dict, context_img_len, x):
    """The block's forward with the arguments forward_orig gives it, on hidden state ``x``.
    Called directly, not through ``original_block``: ComfyUI's closure looks up the loop's
    current block when called, a later block by the time a checkpoint recomputes."""
    return block(x, context=args["txt"], e=args["vec"], freqs=args["pe"], context_img_len=context_img_len,
                 transformer_options=args.get("transformer_options", {}))


def block_qk(block, x, e0, freqs, reduce_heads=lambda t: t.mean(dim=2)):
    """The block's self-attention queries/keys after projection, RMSNorm and RoPE, reduced
    over heads per token by ``reduce_heads`` ([B, S, heads, d] -> [B, S, d], float32; the
    mean by default). Mirrors WanAttentionBlock.forward up to optimized_attention (the guard
    test compares the two)."""
    mod = model_management.cast_to(block.modulation, dtype=x.dtype, device=x.device)
    e = (mod + e0).chunk(6, dim=1) if e0.ndim < 4 else (mod.unsqueeze(0) + e0).unbind(2)
    y = torch.addcmul(wan_model.repeat_e(e[0], x), block.norm1(x), 1 + wan_model.repeat_e(e[1], x))
    attn = block.self_attn
    b, s = y.shape[:2]
    q = apply_rope1(attn.norm_q(attn.q(y)).view(b, s, attn.num_heads, attn.head_dim), freqs)
    k = apply_rope1(attn.norm_k(attn.k(y)).view(b, s, attn.num_heads, attn.head_dim), freqs)
    return reduce_heads(q.float()), reduce_heads(k.float())


# Parameters block_qk uses (names inside a WanAttentionBlock).
QK_PARAMS = ("modulation", "norm1.", "self_attn.q.", "self_attn.k.", "self_attn.norm_q.", "self_attn.norm_k.")
# WanModel parameters outside the blocks on the latent's gradient path. VACE's context
# blocks take the patch-embedded latent and add into the hidden state after their block.
OUTSIDE_BLOCKS_ON_X_PATH = ("patch_embedding.", "head.", "vace_blocks.")


# ---- conditioning --------------------------------------------------------------------

CONCAT_LATENT = "concat_latent_image"       # WanImageToVideo's start-image latent (WAN21.extra_conds)
CONCAT_MASK = "concat_mask"                 # ... and its mask
CLIP_VISION_OUTPUT = "clip_vision_output"   # CLIP-vision output that becomes clip_fea
CONTROL = "control"                         # ControlNet hints in a cond entry


def denoise_mask_function(model_options: dict, guider, sigmas):
    """``model_options["denoise_mask_function"]`` as KSamplerX0Inpaint applies it to the
    denoise mask at each sigma, as ``fn(sigma, mask)``; None when no node set one."""
    fn = model_options.get("denoise_mask_function")
    if fn is None:
        return None
    extra = {"model": guider, "sigmas": sigmas}
    return lambda sigma, mask: fn(sigma, mask, extra_options=extra)


def has_clip_tokens(cond: dict) -> bool:
    """Whether a processed cond entry gives the model CLIP-vision tokens."""
    return "clip_fea" in cond.get("model_conds", {})


def clip_vision_output(tokens: torch.Tensor):
    out = comfy.clip_vision.Output()
    out["penultimate_hidden_states"] = tokens  # the only field Wan's extra_conds reads
    return out


def convert_cond(conditioning):
    return comfy.sampler_helpers.convert_cond(conditioning)


def process_conds(base_model, noise, conds: dict, device, latent_image, denoise_mask, seed) -> dict:
    return comfy.samplers.process_conds(base_model, noise, conds, device, latent_image, denoise_mask, seed)


def prepare_mask(mask, shape, device):
    return comfy.sampler_helpers.prepare_mask(mask, shape, device)


def calc_cond_batch(base_model, conds: list, x, sigma, model_options: dict):
    """The model call a sampler step makes (area/mask conds, ControlNet, batching)."""
    return comfy.samplers.calc_cond_batch(base_model, conds, x, sigma, model_options)


# ---- samplers ------------------------------------------------------------------------

def is_ksampler(sampler) -> bool:
    """A k-diffusion sampler: ``sample`` calls ``sampler_function(model, x, sigmas, ...)``."""
    return isinstance(sampler, comfy.samplers.KSAMPLER)


def with_sampler_function(sampler, fn):
    """A copy of a KSAMPLER whose sampler_function is ``fn`` (extra/inpaint options kept)."""
    out = copy.copy(sampler)
    out.sampler_function = fn
    return out


def function_name(fn) -> str:
    return getattr(getattr(fn, "func", fn), "__name__", "")


# How guided_sampling treats each sampler function of KSampler.SAMPLERS (by __name__;
# sampler_object maps ddim to sample_euler and dpm_fast / dpm_adaptive to local closures).
# The guard test fails when ComfyUI adds a sampler none of these tables names.
SINGLE_STEP = frozenset({  # no history between steps: one step alone is the stock step
    "sample_euler", "sample_euler_cfg_pp", "sample_euler_ancestral", "sample_euler_ancestral_cfg_pp",
    "sample_heun", "sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral",
    "sample_dpmpp_2s_ancestral_cfg_pp", "sample_dpmpp_sde", "sample_dpmpp_sde_gpu", "sample_ddpm", "sample_lcm",
    "sample_seeds_2", "sample_seeds_3"})
MULTISTEP = frozenset({  # history (or a look-ahead sigma) restarts after each guided step
    "sample_heunpp2", "sample_lms", "sample_dpmpp_2m", "sample_dpmpp_2m_cfg_pp", "sample_dpmpp_2m_sde",
    "sample_dpmpp_2m_sde_gpu", "sample_dpmpp_2m_sde_heun", "sample_dpmpp_2m_sde_heun_gpu", "sample_dpmpp_3m_sde",
    "sample_dpmpp_3m_sde_gpu", "sample_ipndm", "sample_ipndm_v", "sample_deis", "sample_res_multistep",
    "sample_res_multistep_cfg_pp", "sample_res_multistep_ancestral", "sample_res_multistep_ancestral_cfg_pp",
    "sample_gradient_estimation", "sample_gradient_estimation_cfg_pp", "sample_er_sde", "sample_sa_solver",
    "sample_sa_solver_pece"})
WHOLE_CALL = frozenset({"dpm_fast_function", "dpm_adaptive_function"})  # plan orders / step sizes per call
# UniPC with two sigmas runs at order 0 and returns x unchanged: guided steps use Euler,
# for a flow model the first-order step of the same family (UniPC / DPM-Solver++ order 1 = Euler).
NO_SINGLE_STEP = frozenset({"sample_unipc", "sample_unipc_bh2"})
# Default noise is a Brownian tree over the call's sigma range (name -> built on the CPU);
# every other function with a noise_sampler argument draws from default_noise_sampler(x, seed).
BROWNIAN_TREE = {
    "sample_dpmpp_sde": True, "sample_dpmpp_2m_sde": True, "sample_dpmpp_2m_sde_heun": True,
    "sample_dpmpp_3m_sde": True, "sample_dpmpp_sde_gpu": False, "sample_dpmpp_2m_sde_gpu": False,
    "sample_dpmpp_2m_sde_heun_gpu": False, "sample_dpmpp_3m_sde_gpu": False,
}


def step_family(fn) -> str | None:
    """"single-step", "multistep", "whole-call", "no-single-step", or None (unknown)."""
    name = function_name(fn)
    for family, names in (("single-step", SINGLE_STEP), ("multistep", MULTISTEP), ("whole-call", WHOLE_CALL),
                          ("no-single-step", NO_SINGLE_STEP)):
        if name in names:
            return family
    return None


def takes_noise_sampler(fn) -> bool:
    try:
        return "noise_sampler" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def default_noise_sampler(fn, x, sigmas, seed):
    """The noise sampler ``fn`` builds for itself when given none."""
    cpu = BROWNIAN_TREE.get(function_name(fn))
    if cpu is None:
        return k_sampling.default_noise_sampler(x, seed=seed)
    positive = sigmas[sigmas > 0]
    return k_sampling.BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seed=seed, cpu=cpu)


def euler_step_function():
    return k_sampling.sample_euler


# ---- model management ----------------------------------------------------------------

def compute_dtype(base_model):
    """The dtype the model computes in (fp8 weights compute in their manual-cast dtype)."""
    return base_model.manual_cast_dtype or base_model.get_dtype()


def float8_dtypes():
    return model_management.FLOAT8_TYPES


def dtype_size(dtype) -> int:
    return model_management.dtype_size(dtype)


def free_device_memory(device) -> int:
    return int(model_management.get_free_memory(device))


def reserved_memory() -> int:
    """What ComfyUI keeps free on top of a model's estimate (--reserve-vram and the OS share)."""
    return model_management.extra_reserved_memory()


def loaded_entries(model_patcher) -> list:
    """model_management's LoadedModel entries of this patcher (empty when not loaded)."""
    return [m for m in model_management.current_loaded_models if m.model is model_patcher]


def free_memory(need: int, device, keep_loaded: list) -> None:
    """Unload other models until ``need`` bytes are free, as ComfyUI does before loading one."""
    model_management.free_memory(need, device, keep_loaded=keep_loaded)


def load_models(patchers: list) -> None:
    model_management.load_models_gpu(patchers)


def throw_if_interrupted() -> None:
    """Raises ComfyUI's InterruptProcessingException after the stop button."""
    model_management.throw_exception_if_processing_interrupted()
