"""Tiny random-weight models with the exact key names and shapes of real checkpoints, so
ComfyUI's own loaders (``UNETLoader``, ``VAELoader``, ``comfy.sd.*``) detect and load them:
Wan 2.1 / 2.2 diffusion models, an LTX-Video DiT (a video model that is not Wan) and the
Wan 2.1 / 2.2 VAEs (cached on disk, see ``cached_tiny_wan_vae``)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
import zlib
from pathlib import Path
from typing import Optional

from .locate import cache_dir, prepare_comfy_imports

# Bump when the way tiny weights are generated changes (invalidates caches).
WEIGHTS_VERSION = "1"

WAN21_VAE_CONFIG = dict(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0)
# ComfyUI builds the Wan 2.2 VAE with this fixed configuration (comfy/sd.py); ~705M parameters.
WAN22_VAE_CONFIG = dict(WAN21_VAE_CONFIG, dim=160, z_dim=48)


def _tensor_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) & 0x7FFF_FFFF_FFFF_FFFF


def init_tensor(name: str, shape, seed: int):
    """Seeded, name-keyed initialisation (independent of key order):
    weights ~ N(0, 1/fan_in), small biases, unit norm scales, small modulation."""
    import torch
    g = torch.Generator().manual_seed(_tensor_seed(seed, name))
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "modulation" or name.endswith(".modulation"):
        return torch.randn(shape, generator=g) * 0.02
    if leaf == "gamma":  # RMS_norm scale in the Wan VAE
        return torch.ones(shape)
    if "norm" in name and leaf == "weight" and len(shape) == 1:
        return torch.ones(shape)
    if leaf == "bias":
        if "norm" in name:
            return torch.zeros(shape)
        return torch.randn(shape, generator=g) * 0.01
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
    return torch.randn(shape, generator=g) * 0.02


def _random_state_dict(shapes: dict, seed: int, dtype) -> dict:
    return {k: init_tensor(k, s, seed).to(dtype).contiguous() for k, s in shapes.items()}


def _write_safetensors(sd: dict, path, meta: dict, mode: Optional[int] = None) -> Path:
    """Write ``sd`` to ``path`` atomically (a temporary file renamed into place), with
    ``meta`` as JSON under the ``fastvmt_tiny`` metadata key."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    save_file(sd, str(tmp), metadata={"fastvmt_tiny": json.dumps(meta)})
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------
# Wan diffusion models
# ---------------------------------------------------------------------------

def _wan_meta_state_dict(dim, num_layers, in_dim, out_dim, ffn_dim, model_type="t2v"):
    import torch
    prepare_comfy_imports()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    if dim % 128 != 0:
        raise ValueError("dim must be a multiple of 128 (ComfyUI derives num_heads = dim // 128)")
    with torch.device("meta"):
        m = WanModel(model_type=model_type, patch_size=(1, 2, 2), in_dim=in_dim, dim=dim, ffn_dim=ffn_dim,
                     freq_dim=256, text_dim=4096, out_dim=out_dim, num_heads=dim // 128,
                     num_layers=num_layers, qk_norm=True, cross_attn_norm=True, eps=1e-6,
                     operations=comfy.ops.disable_weight_init)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def tiny_wan_state_dict(*, dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512, seed=0, dtype=None,
                        model_type="t2v"):
    """State dict with the exact keys/shapes of a Wan 2.1 T2V checkpoint
    (as built by ComfyUI's WanModel) filled with seeded random values.
    ``model_type="i2v"`` adds the Wan 2.1 I2V image branch (img_emb, k_img / v_img)."""
    import torch
    dtype = dtype or torch.float32
    shapes = _wan_meta_state_dict(dim, num_layers, in_dim, out_dim, ffn_dim, model_type)
    return _random_state_dict(shapes, seed, dtype)


def make_tiny_wan(path, *, dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512, seed=0, dtype=None,
                  model_type="t2v") -> Path:
    """Write a tiny random Wan 2.1 diffusion model ``.safetensors`` that ComfyUI's model
    detection recognises (num_heads = dim // 128, text_dim 4096, freq_dim 256, patch
    1x2x2, qk_norm and cross_attn_norm). Layouts: ``in_dim=out_dim=48``: Wan 2.2 TI2V 5B;
    ``in_dim=36``: Wan 2.2 14B I2V; ``in_dim=36, model_type="i2v"``: Wan 2.1 I2V."""
    import torch
    dtype = dtype or torch.float32
    sd = tiny_wan_state_dict(dim=dim, num_layers=num_layers, in_dim=in_dim, out_dim=out_dim,
                             ffn_dim=ffn_dim, seed=seed, dtype=dtype, model_type=model_type)
    meta = dict(dim=dim, num_layers=num_layers, in_dim=in_dim, out_dim=out_dim, ffn_dim=ffn_dim, seed=seed,
                dtype=str(dtype), model_type=model_type, version=WEIGHTS_VERSION)
    return _write_safetensors(sd, path, meta)


# ---------------------------------------------------------------------------
# LTX-Video (a video DiT that is not Wan)
# ---------------------------------------------------------------------------

def _ltxv_meta_shapes(num_layers, head_dim):
    import torch
    prepare_comfy_imports()
    import comfy.ops
    from comfy.ldm.lightricks.model import LTXVModel
    # model_detection reads num_layers (block count), attention_head_dim
    # (attn2.to_k rows // 32) and cross_attention_dim (attn2.to_k columns);
    # in_channels (128), 32 heads and caption_channels (4096) are defaults.
    inner = 32 * head_dim
    with torch.device("meta"):
        m = LTXVModel(in_channels=128, cross_attention_dim=inner, attention_head_dim=head_dim,
                      num_attention_heads=32, caption_channels=4096, num_layers=num_layers,
                      operations=comfy.ops.disable_weight_init)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def make_tiny_ltxv(path, *, num_layers=1, head_dim=4, seed=0, dtype=None) -> Path:
    """Write a tiny random LTX-Video DiT ``.safetensors`` (ComfyUI's
    ``LTXVModel``, 32 heads of ``head_dim``, 128 latent channels) that
    ComfyUI's model detection recognises as ``ltxv``: a video DiT that is
    *not* a Wan model (for "wrong model" tests)."""
    import torch
    dtype = dtype or torch.float32
    sd = _random_state_dict(_ltxv_meta_shapes(num_layers, head_dim), seed, dtype)
    meta = dict(kind="ltxv", num_layers=num_layers, head_dim=head_dim, seed=seed, dtype=str(dtype),
                version=WEIGHTS_VERSION)
    return _write_safetensors(sd, path, meta)


# ---------------------------------------------------------------------------
# Wan VAEs
# ---------------------------------------------------------------------------

def _wan_vae_meta_shapes(version: str = "2.1"):
    import torch
    prepare_comfy_imports()
    if version == "2.2":
        from comfy.ldm.wan.vae2_2 import WanVAE
        config = WAN22_VAE_CONFIG
    else:
        from comfy.ldm.wan.vae import WanVAE
        config = WAN21_VAE_CONFIG
    with torch.device("meta"):
        m = WanVAE(**config)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def make_tiny_wan_vae(path, seed: int = 0, dtype=None, version: str = "2.1") -> Path:
    """Write a random-weight Wan VAE that ``comfy.sd.VAE`` detects from its keys: the
    real, fixed architecture of Wan 2.1 (dim 96, z_dim 16, ~127M params, ~250 MB in fp16)
    or Wan 2.2 (dim 160, z_dim 48, ~705M params, ~1.4 GB). Slow-ish: prefer
    ``cached_tiny_wan_vae``."""
    import torch
    dtype = dtype or torch.float16
    sd = _random_state_dict(_wan_vae_meta_shapes(version), seed, dtype)
    kind = "wan22_vae" if version == "2.2" else "wan21_vae"
    return _write_safetensors(sd, path, {"kind": kind, "seed": seed, "version": WEIGHTS_VERSION}, mode=0o644)


def _shapes_digest(shapes: dict) -> str:
    h = hashlib.sha1()
    for k in sorted(shapes):
        h.update(f"{k}:{shapes[k]};".encode())
    return h.hexdigest()[:10]


def cached_tiny_wan_vae(seed: int = 0, directory: Optional[os.PathLike] = None, version: str = "2.1") -> Path:
    """Path of the random Wan 2.1 (or ``version="2.2"``) VAE in the persistent cache
    (built on first use; the file name encodes WEIGHTS_VERSION, the seed and a digest
    of the key/shape layout so stale files are never reused)."""
    d = Path(directory) if directory is not None else cache_dir()
    digest = _shapes_digest(_wan_vae_meta_shapes(version))
    stem = "wan22_vae" if version == "2.2" else "wan21_vae"
    path = d / f"{stem}_random_v{WEIGHTS_VERSION}_s{seed}_{digest}.safetensors"
    if path.is_file():
        return path
    d.mkdir(parents=True, exist_ok=True)
    lock = d / (path.name + ".lock")
    _with_file_lock(lock, lambda: path.is_file() or make_tiny_wan_vae(path, seed=seed, version=version))
    return path


def _with_file_lock(lock_path: Path, fn):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return fn()
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            return fn()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
