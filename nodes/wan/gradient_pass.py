"""Gradient passes under ComfyUI's ``torch.inference_mode()``.

Weights loaded by a node are inference tensors, which autograd refuses to save. In a
gradient pass every block runs with its parameters swapped (``torch.func.functional_call``)
for ordinary tensors that alias the same memory: no weight is copied. Only fp8 weights
are cast to the compute dtype per pass, because ComfyUI's fast fp8 Linear has no backward.
Block ``i`` keeps its activations until backward when ``i < kept_blocks``
(``MemoryPlan.kept_blocks``); otherwise it runs under a per-block checkpoint: only its
input is kept, and the block is recomputed in backward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from .checks import lost_gradient_message
from .comfy_compat import (OUTSIDE_BLOCKS_ON_X_PATH, attention_backend_name, attention_override,
                           block_args_for_recompute, clip_tokens, dit_transformer_options, float8_dtypes,
                           multigpu_cond_batching, multigpu_model_call, prepended_tokens, run_block, sdpa_attention,
                           set_attention_override)

log = logging.getLogger("FastVMT")

_logged_attention = []


def wants_grad(x) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def use_attention_with_backward(model_options: dict) -> None:
    """Gradient passes need an attention with a backward. SageAttention writes into a
    preallocated output (the gradient is silently dropped) and --use-flash-attention is a
    custom op without an autograd formula, so these passes use PyTorch's SDPA through
    ComfyUI's attention override; every other pass, and all sampling, keeps the user's
    backend (and any override a node installed)."""
    user_override = attention_override(model_options)

    def override(func, *args, **kwargs):
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:3]):
            return sdpa_attention(*args, **kwargs)
        if user_override is not None:
            return user_override(func, *args, **kwargs)
        return func(*args, **kwargs)

    set_attention_override(model_options, override)
    if not _logged_attention:
        _logged_attention.append(True)
        log.info("FastVMT: guidance gradient passes use PyTorch SDPA attention; sampling keeps %s",
                 attention_backend_name())


class _CallWith(torch.nn.Module):
    """Lets ``functional_call`` swap a module's parameters around an arbitrary call."""

    def __init__(self, module, fn):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *args, **kwargs):
        return self.fn(self.module, *args, **kwargs)


@dataclass
class PassCounter:
    """Counts guidance passes, the DiT blocks they evaluate (the motion block included) and
    the weight copies gradient passes make (fp8 casts only: other weights are aliased)."""
    blocks: int = 0
    passes: int = 0
    weight_copies: int = 0
    weight_copy_bytes: int = 0


def _alias(p: torch.Tensor) -> torch.Tensor:
    """An ordinary tensor on ``p``'s memory: autograd may save it, and nothing is copied.
    Made outside inference mode so the alias itself is no inference tensor."""
    with torch.inference_mode(False):
        alias = torch.empty(0, dtype=p.dtype, device=p.device)
        return alias.set_(p.untyped_storage(), p.storage_offset(), p.shape, p.stride())


def _grad_safe_param(p, compute_dtype, counter: PassCounter | None):
    # fp8 weights are cast to the compute dtype: ComfyUI's fast fp8 Linear (torch._scaled_mm,
    # taken only for fp8 weights) has no backward, its cast + F.linear path has. Values are
    # unchanged (the cast path casts to the same dtype) and scaled-fp8 scales still apply.
    if p.dtype in float8_dtypes() and compute_dtype is not None:
        cast = p.detach().to(compute_dtype)
        if counter is not None:
            counter.weight_copies += 1
            counter.weight_copy_bytes += cast.numel() * cast.element_size()
        return cast
    # Tensor subclasses (ComfyUI-GGUF's GGMLTensor: its clone() returns itself and its layers
    # dequantise into a fresh tensor on every call) keep their type, so they are not aliased.
    if type(p) not in (torch.Tensor, torch.nn.Parameter) or not p.is_inference():
        return p.detach()
    return _alias(p.detach())


def call_with_params(module, fn, *args, grad_safe=(), skip=(), compute_dtype=None, counter=None, **kwargs):
    """Call ``fn(module, ...)`` with its parameters detached (no autograd for weights), those
    whose name starts with a ``grad_safe`` prefix made savable by autograd (aliased, or cast
    for fp8 and counted in ``counter``), and those starting with a ``skip`` prefix left alone."""
    params = {"module." + n: (_grad_safe_param(p, compute_dtype, counter) if n.startswith(grad_safe)
                              else p.detach())
              for n, p in module.named_parameters() if not (skip and n.startswith(skip))}
    return torch.func.functional_call(_CallWith(module, fn), params, args, kwargs)


def diffusion_model_wrapper(executor, *args, state: dict, **kwargs):
    """In gradient passes, run the DiT with detached weights and the embedding/head parameters
    made savable (blocks do their own). Also records what forward_orig passes to every
    block besides the patch args, where the latent's tokens start, and whether the DiT got
    autograd. ComfyUI's arguments, whatever they are, go on unchanged (in a closure, so
    none can clash with call_with_params' own keywords)."""
    x = args[0] if args else kwargs["x"]
    clip_fea = clip_tokens(args, kwargs)
    state["context_img_len"] = clip_fea.shape[-2] if clip_fea is not None else None
    state["prepended_tokens"] = prepended_tokens(executor.class_obj, kwargs)
    state["dit_grad"] = (torch.is_grad_enabled(), bool(x.requires_grad))
    state["multigpu"] = multigpu_model_call(dit_transformer_options(args, kwargs))
    if not wants_grad(x):
        return executor(*args, **kwargs)
    return call_with_params(executor.class_obj, lambda _m: executor(*args, **kwargs),
                            grad_safe=OUTSIDE_BLOCKS_ON_X_PATH, skip=("blocks.",), compute_dtype=torch.float32,
                            counter=state.get("counter"))


def check_gradient_path(model_options: dict, base_model) -> None:
    """Before a gradient pass: refuse a model-call path that runs without autograd by design."""
    if multigpu_cond_batching(model_options):
        raise ValueError(lost_gradient_message(base_model, "multigpu"))


def check_gradient_kept(q, state: dict, base_model) -> None:
    """After a gradient pass: the motion block's queries must hang on the latent's graph.
    A no_grad inside ComfyUI's model call cannot be undone from here (the model input was
    already computed without autograd), so the cause is named instead."""
    if q.grad_fn is not None:
        return
    grad_mode, input_grad = state.get("dit_grad", (True, True))
    cause = "multigpu" if state.get("multigpu") else "no_grad" if not grad_mode else \
        "detached" if not input_grad else None
    raise ValueError(lost_gradient_message(base_model, cause))


def gradient_block(block, block_index: int, args: dict, state: dict, x, kept_blocks: int):
    """Block ``block_index`` of a gradient pass on hidden state ``x``, its parameters made
    savable inside. Its activations (and any fp8 casts) stay saved until backward when
    ``block_index < kept_blocks``; otherwise it runs under a per-block checkpoint."""
    args = block_args_for_recompute(args)

    def run(img):
        return call_with_params(block, lambda b, i: run_block(b, args, state.get("context_img_len"), i), img,
                                grad_safe=("",), compute_dtype=img.dtype, counter=state.get("counter"))
    if block_index < kept_blocks:
        return run(x)
    return checkpoint(run, x, use_reentrant=False)
