"""Guidance memory: estimate a gradient pass, decide which blocks keep their activations,
and reserve the memory through ComfyUI's model management before guidance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastvmt_core import FastVMTSettings, PassGeometry, gradient_pass_memory, most_kept_blocks
from .comfy_compat import compute_dtype, dtype_size, float8_dtypes, free_device_memory, free_memory, load_models, loaded_entries, reserved_memory
from .geometry import token_grid
from .qk_capture import pass_extent


def pass_geometry(base_model, latent_shape) -> PassGeometry:
    """fastvmt_core.memory's view of this model and latent."""
    dm = base_model.diffusion_model
    block = dm.blocks[0]
    compute = compute_dtype(base_model)
    size = dtype_size(compute)
    f, h, w = token_grid(latent_shape, dm.patch_size)
    # p.shape, not numel(): quantised (GGUF) tensors report their logical shape there.
    params = sum(math.prod(p.shape) for p in block.parameters())
    # Gradient passes read weights in place; only fp8 weights are copied (cast) per pass.
    fp8 = any(p.dtype in float8_dtypes() for p in block.parameters())
    return PassGeometry(frames=f, height=h, width=w, dim=dm.dim, ffn_dim=block.ffn[0].out_features,
                        num_heads=dm.num_heads, block_params=params, act_bytes=size, weight_bytes=size if fp8 else 0,
                        batch=latent_shape[0])


@dataclass
class MemoryPlan:
    estimate: int                # bytes of one gradient pass as planned
    kept_blocks: int             # blocks 0..kept_blocks-1 keep their activations in a gradient pass
    gradient_blocks: int         # blocks a gradient pass runs whole with autograd
    free_before: int             # device memory free before the reservation
    offloaded: int = 0           # model weight bytes ComfyUI moved off the device to make room
    restored: int = 0            # ... and loaded back after the guided steps

    def describe(self) -> str:
        if not self.kept_blocks or self.kept_blocks == self.gradient_blocks:
            mode = "kept" if self.kept_blocks else "recomputed per block"
        else:
            mode = f"kept in {self.kept_blocks} of {self.gradient_blocks} blocks, the rest recomputed"
        text = (f"gradient pass about {self.estimate / 2**20:.0f} MiB (activations {mode}); "
                f"{self.free_before / 2**20:.0f} MiB were free")
        if self.offloaded:
            text += (f"; ComfyUI offloaded {self.offloaded / 2**20:.0f} MiB of weights for it and loaded "
                     f"{self.restored / 2**20:.0f} MiB back after the guided steps")
        return text


def plan_memory(model_patcher, latent_shape, settings: FastVMTSettings) -> MemoryPlan:
    """Estimate a gradient pass, resolve ``settings.keep_activations`` ("auto" / "never" /
    "always") into ``kept_blocks``, and reserve the memory through ComfyUI's model
    management, so the pass does not run out of memory on a fully loaded card: other
    models are freed first, then part of this one is offloaded; ``restore_after_guidance``
    loads it back."""
    device = model_patcher.load_device
    geometry = pass_geometry(model_patcher.model, latent_shape)
    num_blocks = len(model_patcher.model.diffusion_model.blocks)
    blocks = pass_extent(settings.motion_block, settings.exit_block, num_blocks).gradient_blocks
    free = free_device_memory(device)
    reserve = reserved_memory()
    if settings.keep_activations == "auto":   # as many blocks as the free memory holds
        kept = most_kept_blocks(geometry, settings, free - reserve, gradient_blocks=blocks)
    else:
        kept = blocks if settings.keep_activations == "always" else 0
    estimate = gradient_pass_memory(geometry, settings, kept_blocks=kept, gradient_blocks=blocks).total
    plan = MemoryPlan(estimate, kept, blocks, free)
    need = plan.estimate + reserve
    if need > free:
        plan.offloaded = _make_room(model_patcher, need, device)
    return plan


def _make_room(model_patcher, need: int, device) -> int:
    """Free ``need`` bytes: other models first, as ComfyUI does, then part of this one.
    Returns the bytes of this model offloaded."""
    ours = loaded_entries(model_patcher)
    free_memory(need, device, keep_loaded=ours)
    short = need - free_device_memory(device)
    if short > 0 and ours:
        # Part of this model, never all of it: a full unload would also undo its weight
        # patches (LoRA) mid-sampling. Offloaded layers run through ComfyUI's low-VRAM path.
        return model_patcher.partially_unload(model_patcher.offload_device, short)
    return 0


def restore_after_guidance(model_patcher, plan: MemoryPlan) -> None:
    """Load back what the reservation offloaded, for the unguided steps (ComfyUI's loader
    decides how much fits, as at the start of sampling)."""
    if plan.offloaded:
        before = model_patcher.loaded_size()
        load_models([model_patcher])
        plan.restored = max(0, model_patcher.loaded_size() - before)

