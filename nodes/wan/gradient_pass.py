"""Gradient passes under ComfyUI's ``torch.inference_mode()``.

Weights loaded by a node are inference tensors, which autograd refuses to save. In a
gradient pass every block runs with its parameters swapped for clones
(``torch.func.functional_call``); block ``i`` keeps its activations until backward when
``i < kept_blocks`` (``MemoryPlan.kept_blocks``), otherwise it runs under a per-block
checkpoint: only its input is kept, and the block (with its cloned weights) is recomputed
in backward, so at most one block's cloned weights exist at a time.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.checkpoint import checkpoint

from .comfy_compat import (OUTSIDE_BLOCKS_ON_X_PATH, attention_backend_name, attention_override, clip_tokens,
                           float8_dtypes, run_block, sdpa_attention, set_attention_override)

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


def _clone_param(p, compute_dtype):
    # fp8 weights are cloned in the compute dtype: ComfyUI's fast fp8 Linear (torch._scaled_mm,
    # taken only for fp8 weights) has no backward, its cast + F.linear path has. Values are
    # unchanged (the cast path casts to the same dtype) and scaled-fp8 scales still apply.
    # ComfyUI-GGUF's GGMLTensor.clone() returns itself; harmless, as its layers dequantise
    # into a fresh tensor on every call (tests/test_gguf_host.py).
    if p.dtype in float8_dtypes() and compute_dtype is not None:
        return p.detach().to(compute_dtype)
    return p.detach().clone()


def call_with_params(module, fn, *args, clone=(), skip=(), compute_dtype=None, **kwargs):
    """Call ``fn(module, ...)`` with its parameters detached (no autograd for weights)
    and those whose name starts with a ``clone`` prefix cloned: clones made outside
    inference mode are ordinary tensors that autograd may save. Names starting with
    a ``skip`` prefix are left alone."""
    params = {"module." + n: (_clone_param(p, compute_dtype) if n.startswith(clone) else p.detach())
              for n, p in module.named_parameters() if not (skip and n.startswith(skip))}
    return torch.func.functional_call(_CallWith(module, fn), params, args, kwargs)


def diffusion_model_wrapper(executor, *args, state: dict, **kwargs):
    """In gradient passes, run the DiT with detached weights and cloned embedding/head
    parameters; blocks clone their own parameters, one at a time. Also records what
    forward_orig passes to every block besides the patch args."""
    x = args[0]
    clip_fea = clip_tokens(args, kwargs)
    state["context_img_len"] = clip_fea.shape[-2] if clip_fea is not None else None
    if not wants_grad(x):
        return executor(*args, **kwargs)
    return call_with_params(executor.class_obj, lambda _m, *a, **kw: executor(*a, **kw), *args,
                            clone=OUTSIDE_BLOCKS_ON_X_PATH, skip=("blocks.",), compute_dtype=torch.float32,
                            **kwargs)


def gradient_block(block, block_index: int, args: dict, state: dict, x, kept_blocks: int):
    """Block ``block_index`` of a gradient pass on hidden state ``x``, parameters cloned
    inside. Its activations (and cloned weights) stay saved until backward when
    ``block_index < kept_blocks``; otherwise it runs under a per-block checkpoint."""
    def run(img):
        return call_with_params(block, lambda b, i: run_block(b, args, state.get("context_img_len"), i), img,
                                clone=("",), compute_dtype=img.dtype)
    if block_index < kept_blocks:
        return run(x)
    return checkpoint(run, x, use_reentrant=False)
