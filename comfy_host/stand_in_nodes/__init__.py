"""Test-only ComfyUI nodes for the FastVMT test harness (V1 node API).

Loaded by ``comfy_host.bootstrap`` with ComfyUI's ``nodes.load_custom_node``.
All names start with ``FastVMTTest`` so they cannot clash with real nodes.

* FastVMTTestConditioning - stand-in for a UMT5-XXL text encoder: seeded
  random CONDITIONING ``[[tensor[1, tokens, 4096], {}]]``.
* FastVMTTestLatent      - seeded random video LATENT ``{"samples": [B, C, F, H, W]}``.
* FastVMTTestImage       - seeded smooth random IMAGE batch ``[N, H, W, 3]`` in [0, 1]
                           (``frames`` may be 0: an empty batch).
  Both take an optional ``fill``: "random" (default), or "nan" / "inf": the
  same random values with one element set to NaN / +inf (a corrupt input).
* FastVMTTestInspect     - output node taking anything; reports tensor stats
                           as UI output (lets any graph pass validation).
* FastVMTTestClipVision  - stand-in for clip_vision_h: ComfyUI's own ClipVisionModel
                           (the ViT-H layout, width 1280, so Wan's image branch takes
                           its tokens) at toy depth and image size, seeded random weights.
* FastVMTTestRecordModelCalls - a model clone that records what every model call
                           receives (latent input, sigma, image concat, CLIP-vision
                           tokens, denoise mask, whether it carries a gradient) in
                           the class's ``records`` list, through an APPLY_MODEL wrapper.
* FastVMTTestFrameMask   - MASK ``[frames, H, W]``: 0 on the first ``held_frames``
                           frames, 1 elsewhere (a per-frame noise mask for
                           SetLatentNoiseMask, like Wan22ImageToVideoLatent's).
"""
import zlib

import torch

try:  # ComfyUI's "accept anything" input type
    from comfy.comfy_types.node_typing import IO
    ANY = IO.ANY
except Exception:  # pragma: no cover - very old ComfyUI
    class _AnyType(str):
        def __ne__(self, other):
            return False
    ANY = _AnyType("*")

TEXT_DIM = 4096
MAX_SEED = 0xFFFFFFFFFFFFFFFF
FILLS = ["random", "nan", "inf"]


def _generator(seed, salt=""):
    # Deterministic across processes: no Python hash() (it is salted per process).
    mixed = (int(seed) * 0x9E3779B1 + zlib.crc32(salt.encode("utf-8"))) & 0x7FFFFFFFFFFFFFFF
    return torch.Generator(device="cpu").manual_seed(mixed)


def _apply_fill(x, fill):
    """"random": unchanged; "nan" / "inf": one element (the first) replaced."""
    if fill == "random" or x.numel() == 0:
        return x
    if fill not in ("nan", "inf"):
        raise ValueError(f"fill: unknown value {fill!r} (expected one of {FILLS})")
    x = x.clone()
    x.view(-1)[0] = float(fill)
    return x


def _intermediate_device():
    try:
        import comfy.model_management
        return comfy.model_management.intermediate_device()
    except Exception:  # pragma: no cover
        return torch.device("cpu")


class FastVMTTestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                "text": ("STRING", {"default": "", "multiline": True}),
            },
            "optional": {
                "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01}),
            },
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "FastVMT/testing"

    def encode(self, seed, tokens, text, scale=1.0):
        g = _generator(seed, "cond:" + text)
        cond = torch.randn((1, int(tokens), TEXT_DIM), generator=g, dtype=torch.float32) * float(scale)
        return ([[cond.to(_intermediate_device()), {}]],)


class FastVMTTestLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "channels": ("INT", {"default": 16, "min": 1, "max": 256}),
                "frames": ("INT", {"default": 2, "min": 1, "max": 1024}),
                "height": ("INT", {"default": 8, "min": 1, "max": 4096}),
                "width": ("INT", {"default": 8, "min": 1, "max": 4096}),
            },
            "optional": {
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64}),
                "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.01}),
                "fill": (FILLS, {"default": "random"}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "make"
    CATEGORY = "FastVMT/testing"

    def make(self, seed, channels, frames, height, width, batch_size=1, scale=1.0, fill="random"):
        g = _generator(seed, "latent")
        shape = (int(batch_size), int(channels), int(frames), int(height), int(width))
        x = torch.randn(shape, generator=g, dtype=torch.float32) * float(scale)
        x = _apply_fill(x, fill)
        return ({"samples": x.to(_intermediate_device())},)


class FastVMTTestImage:
    """Smooth random frames (low-res noise upsampled) so video nodes see
    structure rather than white noise."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "frames": ("INT", {"default": 5, "min": 0, "max": 4096}),
                "height": ("INT", {"default": 64, "min": 8, "max": 8192, "step": 8}),
                "width": ("INT", {"default": 64, "min": 8, "max": 8192, "step": 8}),
            },
            "optional": {
                "fill": (FILLS, {"default": "random"}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "FastVMT/testing"

    def make(self, seed, frames, height, width, fill="random"):
        g = _generator(seed, "image")
        coarse = torch.rand((int(frames), 3, max(1, height // 8), max(1, width // 8)), generator=g)
        img = torch.nn.functional.interpolate(coarse, size=(int(height), int(width)), mode="bilinear",
                                              align_corners=False)
        img = img.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
        return (_apply_fill(img, fill).to(_intermediate_device()),)


def _stats(value):
    if isinstance(value, dict) and "samples" in value:
        value = value["samples"]
    if isinstance(value, list) and value and isinstance(value[0], (list, tuple)) and len(value[0]) == 2 \
            and torch.is_tensor(value[0][0]):
        value = value[0][0]  # CONDITIONING
    if torch.is_tensor(value):
        v = value.detach().float()
        finite = bool(torch.isfinite(v).all()) if v.numel() else True
        return {
            "kind": "tensor",
            "shape": list(value.shape),
            "dtype": str(value.dtype).replace("torch.", ""),
            "finite": finite,
            "mean": float(v.mean()) if v.numel() and finite else None,
            "std": float(v.std()) if v.numel() > 1 and finite else None,
            "min": float(v.min()) if v.numel() and finite else None,
            "max": float(v.max()) if v.numel() and finite else None,
        }
    if isinstance(value, (int, float, str, bool)) or value is None:
        return {"kind": type(value).__name__, "value": value}
    return {"kind": type(value).__name__, "repr": repr(value)[:200]}


class FastVMTTestInspect:
    """Output node: accepts any value, reports summary stats in its UI output
    (``{"fastvmt_stats": [ {...} ]}``)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY, {})}}

    RETURN_TYPES = ()
    FUNCTION = "inspect"
    OUTPUT_NODE = True
    CATEGORY = "FastVMT/testing"

    def inspect(self, value):
        return {"ui": {"fastvmt_stats": [_stats(value)]}}


class _ModelPatchNode:
    """MODEL in, a patched clone out."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL", {})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "FastVMT/testing"


class FastVMTTestNoGradAttention(_ModelPatchNode):
    """A model clone whose attention, like SageAttention, returns the right values with no
    gradient (through ComfyUI's ``optimized_attention_override``)."""

    def patch(self, model):
        import comfy.model_patcher
        m = model.clone()
        m.model_options = comfy.model_patcher.create_model_options_clone(m.model_options)
        m.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = (
            lambda func, *args, **kwargs: func(*args, **kwargs).detach())
        return (m,)


class FastVMTTestNoGradModel(_ModelPatchNode):
    """A model clone whose whole forward runs without autograd (an APPLY_MODEL wrapper under
    ``torch.no_grad``): stands in for a weight format or kernel with no backward."""

    def patch(self, model):
        import torch
        import comfy.patcher_extension

        def no_grad(executor, *args, **kwargs):
            with torch.no_grad():
                return executor(*args, **kwargs)

        m = model.clone()
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "fastvmt_test_no_grad", no_grad)
        return (m,)


class FastVMTTestRecordModelCalls(_ModelPatchNode):
    records = []  # one dict per model call, in order; tests clear it before a run

    def patch(self, model):
        import comfy.patcher_extension

        def record(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
            def copy(v):
                return v.detach().float().cpu().clone() if torch.is_tensor(v) else None
            FastVMTTestRecordModelCalls.records.append({
                "grad": bool(x.requires_grad), "x": copy(x), "sigma": copy(t), "c_concat": copy(c_concat),
                "clip_fea": copy(kwargs.get("clip_fea")), "denoise_mask": copy(kwargs.get("denoise_mask"))})
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

        m = model.clone()
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "fastvmt_test_record", record)
        return (m,)


CLIP_VISION_STAND_IN = {  # clip_vision_config_h.json at 2 layers, 28 px images (2x2 patches + class token)
    "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "gelu", "hidden_size": 1280, "image_size": 28,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64, "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model", "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 2,
    "patch_size": 14, "projection_dim": 64, "torch_dtype": "float32",
}


class FastVMTTestClipVision:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED})}}

    RETURN_TYPES = ("CLIP_VISION",)
    FUNCTION = "load"
    CATEGORY = "FastVMT/testing"

    def load(self, seed):
        import json
        import math
        import tempfile
        import comfy.clip_vision
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(CLIP_VISION_STAND_IN, fh)
        clip = comfy.clip_vision.ClipVisionModel(fh.name)
        g = _generator(seed, "clip_vision")
        sd = {}
        for name, p in clip.get_sd().items():
            if p.ndim >= 2:
                sd[name] = torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel())
            elif "norm" in name and name.endswith("weight"):
                sd[name] = torch.ones(p.shape)
            else:
                sd[name] = torch.randn(p.shape, generator=g) * 0.02
        clip.load_sd(sd)
        return (clip,)


class FastVMTTestFrameMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("INT", {"default": 2, "min": 1, "max": 1024}),
            "height": ("INT", {"default": 8, "min": 1, "max": 4096}),
            "width": ("INT", {"default": 8, "min": 1, "max": 4096}),
            "held_frames": ("INT", {"default": 1, "min": 0, "max": 1024}),
        }}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "make"
    CATEGORY = "FastVMT/testing"

    def make(self, frames, height, width, held_frames):
        mask = torch.ones((int(frames), int(height), int(width)))
        mask[:int(held_frames)] = 0.0
        return (mask.to(_intermediate_device()),)


NODE_CLASS_MAPPINGS = {
    "FastVMTTestRecordModelCalls": FastVMTTestRecordModelCalls,
    "FastVMTTestClipVision": FastVMTTestClipVision,
    "FastVMTTestFrameMask": FastVMTTestFrameMask,
    "FastVMTTestNoGradModel": FastVMTTestNoGradModel,
    "FastVMTTestNoGradAttention": FastVMTTestNoGradAttention,
    "FastVMTTestConditioning": FastVMTTestConditioning,
    "FastVMTTestLatent": FastVMTTestLatent,
    "FastVMTTestImage": FastVMTTestImage,
    "FastVMTTestInspect": FastVMTTestInspect,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "FastVMTTestRecordModelCalls": "FastVMT Test Record Model Calls",
    "FastVMTTestClipVision": "FastVMT Test CLIP Vision (toy ViT-H layout)",
    "FastVMTTestFrameMask": "FastVMT Test Frame Mask",
    "FastVMTTestNoGradModel": "FastVMT Test Model Without Gradient",
    "FastVMTTestNoGradAttention": "FastVMT Test Attention Without Gradient",
    "FastVMTTestConditioning": "FastVMT Test Conditioning (random UMT5 stand-in)",
    "FastVMTTestLatent": "FastVMT Test Latent (random)",
    "FastVMTTestImage": "FastVMT Test Image (random)",
    "FastVMTTestInspect": "FastVMT Test Inspect",
}
