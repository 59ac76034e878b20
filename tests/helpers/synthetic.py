"""Synthetic data with known properties, shared by test files: moving clips, random
CoTracker3 weights, a LoRA and the checkpoint with it merged in, features of a moving texture."""

import torch

from .graphs import LORA_STRENGTH

# Motion fidelity clips: T frames of H x W.
H, W, T = 64, 80, 10


def translating(frames=T, h=H, w=W, velocity=(2.0, 1.0), seed=0):
    """A texture moving by ``velocity`` (vx, vy) pixels per frame (content moves, like a pan)."""
    from bench.fidelity_ranking import translating as synthetic_pan
    return synthetic_pan(frames, h, w, velocity=velocity, seed=seed)


def random_weights(seed: int, visibility_bias: float = -0.9) -> dict:
    """A random state dict of the real CoTracker3 network. The heads get a larger spread than
    the released initialisation (whose tiny heads barely move a point) and a visibility bias
    that puts some frames above the 0.9 threshold and some below, so tracks move and
    visibility varies."""
    from fastvmt_core.cotracker import CoTracker3
    torch.manual_seed(seed)
    sd = CoTracker3().state_dict()
    gen = torch.Generator().manual_seed(seed)
    for key in ("updateformer.flow_head.weight", "updateformer.vis_conf_head.weight"):
        sd[key] = torch.randn(sd[key].shape, generator=gen) * 0.05
    sd["updateformer.vis_conf_head.bias"][0] = visibility_bias
    return sd


def write_lora_and_merged(comfy, model_name):
    """A LoRA on every self-attention projection (the motion block's q/k included) and the
    checkpoint with it merged in at LORA_STRENGTH; returns their file names."""
    from safetensors.torch import load_file, save_file
    base = load_file(comfy.model_dir("diffusion_models") / model_name)
    gen = torch.Generator().manual_seed(3)
    lora, merged, rank = {}, dict(base), 4
    for key in [k for k in base if ".self_attn." in k and k.endswith(".weight") and base[k].ndim == 2]:
        w = base[key]
        up = torch.randn(w.shape[0], rank, generator=gen) * 0.1
        down = torch.randn(rank, w.shape[1], generator=gen) * 0.1
        stem = "diffusion_model." + key[:-len(".weight")]
        lora[stem + ".lora_up.weight"], lora[stem + ".lora_down.weight"] = up, down
        merged[key] = w + LORA_STRENGTH * (up @ down)
    save_file(lora, str(comfy.model_dir("loras") / "fastvmt_test_lora.safetensors"))
    merged_name = "fastvmt_tiny_wan_lora_merged.safetensors"
    save_file(merged, str(comfy.model_dir("diffusion_models") / merged_name))
    comfy.refresh_file_lists()
    return "fastvmt_test_lora.safetensors", merged_name


def translating_features(frames, h, w, d, velocity, *, scale=3.0, seed=0):
    """Features of a random texture that moves by ``velocity`` (dy, dx) tokens per frame.

    Token (y, x) of frame f shows texture point (y - f*vy, x - f*vx), so a token of
    frame i is found at (y + (j - i)*vy, x + (j - i)*vx) in frame j.
    """
    vy, vx = velocity
    g = torch.Generator().manual_seed(seed)
    pad = (frames - 1) * max(abs(vy), abs(vx)) + 1
    tex = torch.randn(h + 2 * pad, w + 2 * pad, d, generator=g)
    # Fixed norm: every token matches itself sharply (no weak low-norm outliers).
    tex = tex / tex.norm(dim=-1, keepdim=True) * scale * d ** 0.5
    out = [tex[pad - f * vy: pad - f * vy + h, pad - f * vx: pad - f * vx + w] for f in range(frames)]
    return torch.stack(out)
