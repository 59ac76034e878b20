"""The FASTVMT_MOTION payload passed between nodes, and its .safetensors file format."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..fastvmt_core import FastVMTSettings, frame_pairs

# Settings that belong to the motion (Extract Motion); all others come from Step-Skip Settings.
EXTRACTION_FIELDS = ("motion_block", "temporal_span", "window", "tile", "tau")

FILE_FORMAT = "fastvmt-motion"
FILE_VERSION = 1


@dataclass
class MotionReference:
    """What the sampler needs to transfer a reference clip's motion.

    latent:       clean reference latent as the VAE gives it, [1, C, F, H, W], float32, CPU.
    settings:     extraction settings (block, span, window, tile, tau); guidance fields unused.
    conditioning: ComfyUI CONDITIONING for the reference pass, or None (then the
                  generation's positive prompt is used).
    geometry:     the extracting model's geometry (WanGeometry.to_dict()), for checks.
    source:       a human-readable note of where the reference came from.
    """

    latent: torch.Tensor
    settings: FastVMTSettings
    conditioning: list | None
    geometry: dict
    source: str = ""

    def token_grid(self) -> tuple[int, int, int]:
        _, _, f, h, w = self.latent.shape
        return f, -(-h // 2), -(-w // 2)

    def summary(self) -> str:
        f, h, w = self.token_grid()
        s = self.settings
        n_pairs = len(frame_pairs(f, s.temporal_span))
        cond = "its own conditioning" if self.conditioning is not None else "the generation's positive prompt"
        return (f"FastVMT motion: {f} latent frames, {h}x{w} token grid, {n_pairs} frame pairs "
                f"(span {s.temporal_span}), window {s.window}, tile {s.tile[0]}x{s.tile[1]}, tau {s.tau}, "
                f"block {s.motion_block} of {self.geometry.get('num_blocks', '?')}; reference pass uses {cond}."
                + (f"\n{self.source}" if self.source else ""))


def save_motion(motion: MotionReference, path: str) -> None:
    tensors = {"reference_latent": motion.latent.detach().float().cpu().contiguous()}
    cond_meta = None
    if motion.conditioning is not None:
        cond_meta = []
        for i, (tensor, extra) in enumerate(motion.conditioning):
            tensors[f"conditioning.{i}"] = tensor.detach().float().cpu().contiguous()
            pooled = extra.get("pooled_output") if isinstance(extra, dict) else None
            if isinstance(pooled, torch.Tensor):
                tensors[f"conditioning.{i}.pooled"] = pooled.detach().float().cpu().contiguous()
            cond_meta.append({"pooled": isinstance(pooled, torch.Tensor)})
    metadata = {
        "format": FILE_FORMAT,
        "version": str(FILE_VERSION),
        "settings": json.dumps({k: v for k, v in motion.settings.to_dict().items() if k in EXTRACTION_FIELDS}),
        "geometry": json.dumps(motion.geometry),
        "conditioning": json.dumps(cond_meta),
        "source": motion.source,
    }
    save_file(tensors, path, metadata=metadata)


def load_motion(path: str) -> MotionReference:
    """Read a motion file; clear errors for foreign files, newer versions and bad contents."""
    try:
        with safe_open(path, framework="pt") as fh:
            meta = fh.metadata() or {}
            names = set(fh.keys())
            tensors = {name: fh.get_tensor(name) for name in names}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise ValueError(f"motion file {path!r} is not a readable .safetensors file ({exc})") from exc
    if meta.get("format") != FILE_FORMAT:
        raise ValueError(f"motion file {path!r} is not a FastVMT motion (format {meta.get('format')!r}); "
                         "save one with the 'Save Motion' node")
    try:
        version = int(meta.get("version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > FILE_VERSION:
        raise ValueError(f"motion file {path!r} has format version {meta.get('version')!r}; this FastVMT reads "
                         f"versions 1..{FILE_VERSION}. Update the FastVMT node pack or re-extract the motion.")
    latent = tensors.get("reference_latent")
    if latent is None or latent.ndim != 5 or latent.shape[0] != 1 or min(latent.shape) < 1:
        raise ValueError(f"motion file {path!r} has no valid reference latent [1, C, F, H, W]")
    if not torch.isfinite(latent).all():
        raise ValueError(f"motion file {path!r} contains non-finite values in its reference latent")
    settings = FastVMTSettings.from_dict(json.loads(meta.get("settings", "{}")))
    cond_meta = json.loads(meta.get("conditioning", "null"))
    conditioning = None
    if cond_meta is not None:
        conditioning = []
        for i, entry in enumerate(cond_meta):
            extra = {}
            if entry.get("pooled"):
                extra["pooled_output"] = tensors[f"conditioning.{i}.pooled"]
            conditioning.append([tensors[f"conditioning.{i}"], extra])
    return MotionReference(latent=latent.float(), settings=settings, conditioning=conditioning,
                           geometry=json.loads(meta.get("geometry", "{}")), source=meta.get("source", ""))
