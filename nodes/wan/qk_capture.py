"""Q/K capture with early exit.

A guidance pass runs the real model call (``calc_cond_batch``, exactly as the sampler
does) with per-block patches on a per-pass copy of the model options: blocks before the
motion block run as usual (as gradient blocks in a gradient pass), the motion block
computes its head-averaged self-attention queries/keys and, in the early exit, raises
``_MotionBlockReached``: no later block and no head is evaluated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from fastvmt_core import head_mean
from .comfy_compat import (QK_PARAMS, add_block_patch, add_pass_wrapper, block_inputs, block_output, block_qk,
                           calc_cond_batch, guidance_pass_options, main_token_inputs, run_original_block)
from .geometry import token_grid
from .gradient_pass import (PassCounter, call_with_params, check_gradient_kept, check_gradient_path,
                            diffusion_model_wrapper, gradient_block, use_attention_with_backward, wants_grad)


@dataclass(frozen=True)
class QKPass:
    """One kind of guidance pass, fixed for a sampling run (the generation's or the reference's)."""
    base_model: object            # ComfyUI's BaseModel (guider.inner_model)
    conds: list                   # processed conds, as the sampler gives them to calc_cond_batch
    model_options: dict           # the run's model options; every pass works on its own copy
    motion_block: int             # the block whose queries/keys are captured
    exit_block: int = -1          # FastVMTSettings.exit_block: -1 stops inside the motion block; N runs
    #                               blocks up to N; the last block or past it (999): whole DiT and head
    kept_blocks: int = 0          # MemoryPlan.kept_blocks: blocks 0..kept_blocks-1 keep their activations
    flow_definition: str = "paper"  # FastVMTSettings.flow_definition: how heads are averaged (head_mean)


@dataclass(frozen=True)
class PassExtent:
    """The blocks a pass evaluates, read from the settings' exit_block."""
    motion_block: int
    last: int                     # index of the last block evaluated
    head: bool                    # the whole DiT and its head run

    @property
    def stops_in_motion_block(self) -> bool:
        return self.last == self.motion_block and not self.head

    @property
    def gradient_blocks(self) -> int:
        """Blocks, from block 0, that a gradient pass runs with autograd: up to the motion
        block (exclusive) in the early exit, up to the exit block (evaluated without
        autograd, for its cost), or all of them."""
        return self.last + 1 if self.head else self.last


def pass_extent(motion_block: int, exit_block: int, num_blocks: int) -> PassExtent:
    if exit_block < 0 or exit_block == motion_block:
        return PassExtent(motion_block, motion_block, False)
    if exit_block >= num_blocks - 1:
        return PassExtent(motion_block, num_blocks - 1, True)
    return PassExtent(motion_block, exit_block, False)


class _MotionBlockReached(Exception):
    """Ends a guidance pass at the motion block (or the exit block), carrying the motion block's Q/K."""

    def __init__(self, q, k):
        super().__init__("FastVMT motion block reached")
        self.q, self.k = q, k


def capture_qk(spec: QKPass, x, sigma, counter: PassCounter):
    """Run the model as the sampler does on latent ``x`` at ``sigma``, stopping where ``spec``
    says; returns the motion block's q, k [B, F, H, W, head_dim]."""
    dm = spec.base_model.diffusion_model
    opts = guidance_pass_options(spec.model_options)
    grad_pass = wants_grad(x)
    if grad_pass:
        check_gradient_path(opts, spec.base_model)
        use_attention_with_backward(opts)
    f, h, w = token_grid(x.shape, dm.patch_size)
    # The motion block's patch cuts its input to these tokens (main_token_inputs).
    captured, state = {}, {"counter": counter, "grid_tokens": f * h * w}
    for i, patch in enumerate(_block_patches(spec, dm.blocks, counter, captured, state)):
        opts = add_block_patch(opts, patch, i)
    add_pass_wrapper(opts, functools.partial(diffusion_model_wrapper, state=state))
    counter.passes += 1
    sigma_batch = sigma.reshape(1).to(x.device).expand(x.shape[0])
    try:
        calc_cond_batch(spec.base_model, [spec.conds], x, sigma_batch, opts)
    except _MotionBlockReached as hit:
        q, k = hit.q, hit.k
    else:
        if "qk" not in captured:
            raise RuntimeError(f"FastVMT: the Wan model finished without reaching block {spec.motion_block}; "
                               "another node may have replaced its blocks")
        q, k = captured["qk"]
    if grad_pass:
        check_gradient_kept(q, state, spec.base_model)
    return q.reshape(-1, f, h, w, q.shape[-1]), k.reshape(-1, f, h, w, k.shape[-1])


def _block_patches(spec: QKPass, blocks, counter, captured, state) -> list:
    """One patch per block the pass evaluates, in block order."""
    extent = pass_extent(spec.motion_block, spec.exit_block, len(blocks))
    patches = []
    for i in range(extent.last + 1):
        if i == spec.motion_block and extent.stops_in_motion_block:
            patch = _capture_patch(blocks[i], counter, state, spec.flow_definition)
        elif i == spec.motion_block:
            patch = _record_and_continue(blocks[i], i, counter, captured, state, spec.kept_blocks,
                                         spec.flow_definition)
        elif i == extent.last and not extent.head:
            patch = _stop_patch(counter, captured)
        else:
            patch = _pass_through_patch(blocks[i], i, counter, state, spec.kept_blocks)
        patches.append(patch)
    return patches


def _motion_qk(block, args: dict, state: dict, counter: PassCounter, flow_definition: str):
    """The motion block's Q/K of the latent's own tokens (reference tokens before them and
    appended ones, v0.38's context_latents, are cut off with their RoPE rows)."""
    x, e0, freqs = main_token_inputs(*block_inputs(args), state.get("prepended_tokens", 0), state["grid_tokens"])
    reduce_heads = functools.partial(head_mean, flow_definition)
    if wants_grad(x):
        return call_with_params(block, block_qk, x, e0, freqs, reduce_heads, grad_safe=QK_PARAMS,
                                compute_dtype=x.dtype, counter=counter)
    return block_qk(block, x, e0, freqs, reduce_heads)


def _pass_through_patch(block, index: int, counter: PassCounter, state: dict, kept_blocks: int):
    def patch(args, extra):
        counter.blocks += 1
        x, _, _ = block_inputs(args)
        if not wants_grad(x):
            return run_original_block(args, extra)
        return block_output(gradient_block(block, index, args, state, x, kept_blocks))
    return patch


def _capture_patch(block, counter: PassCounter, state: dict, flow_definition: str):
    def patch(args, extra):
        counter.blocks += 1
        raise _MotionBlockReached(*_motion_qk(block, args, state, counter, flow_definition))
    return patch


def _record_and_continue(block, index: int, counter: PassCounter, captured: dict, state: dict, kept_blocks: int,
                         flow_definition: str):
    """The motion block when the pass goes on: record its Q/K, then run it."""
    def patch(args, extra):
        counter.blocks += 1
        x, _, _ = block_inputs(args)
        captured["qk"] = _motion_qk(block, args, state, counter, flow_definition)
        if not wants_grad(x):
            return run_original_block(args, extra)
        return block_output(gradient_block(block, index, args, state, x, kept_blocks))
    return patch


def _stop_patch(counter: PassCounter, captured: dict):
    """The exit block: evaluated for its cost only, then the pass ends."""
    def patch(args, extra):
        counter.blocks += 1
        with torch.no_grad():  # the output is discarded
            run_original_block(args, extra)
        raise _MotionBlockReached(*captured["qk"])
    return patch
