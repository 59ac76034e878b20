"""The FASTVMT_MOTION payload passed between nodes, and its .safetensors file format."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from safetensors import safe_open
from safetensors.torch import save

from fastvmt_core import EXTRACTION_FIELDS, FastVMTSettings, frame_pairs


FILE_FORMAT = "fastvmt-motion"
FILE_VERSION = 2  # 2: image-to-video conditioning of the reference pass ("image"); 1 still loads (no image)
IMAGE_KINDS = ("concat", "first_frame")


@dataclass
class ReferenceImage:
    """How the reference pass is conditioned on the reference's own first frame, the way an
    image-to-video generation is conditioned on the user's start image.

    kind "concat" (Wan 2.1 I2V, Wan 2.2 14B I2V: the start image is concatenated to the
    latent): ``concat_latent`` is the VAE encoding of the first frame followed by grey
    frames, ``mask`` [1, 1, F, H, W] is 0 on the given latent frame (both as WanImageToVideo
    builds them); ``clip_vision`` holds the first frame's penultimate CLIP-vision states
    [1, tokens, 1280] for models with an image branch (Wan 2.1 I2V), else None.
    kind "first_frame" (Wan 2.2 TI2V 5B): the reference latent's own first frame is held
    clean where ``mask`` is 0, as Wan22ImageToVideoLatent's noise mask holds the image.
    """

    kind: str
    mask: torch.Tensor
    concat_latent: torch.Tensor | None = None
    clip_vision: torch.Tensor | None = None

    def describe(self) -> str:
        if self.kind == "concat":
            return ("image-to-video: the reference pass sees its own first frame as the start image"
                    + (" (and its CLIP-vision tokens)" if self.clip_vision is not None else ""))
        return "image-to-video: the reference pass holds its own first latent frame clean"


@dataclass
class MotionReference:
    """What the sampler needs to transfer a reference clip's motion.

    latent:       clean reference latent as the VAE gives it, [1, C, F, H, W], float32, CPU.
    settings:     extraction settings (block, span, window, tile, tau); guidance fields unused.
    conditioning: ComfyUI CONDITIONING for the reference pass, or None (then the
                  generation's positive prompt is used).
    geometry:     the extracting model's geometry (WanGeometry.to_dict()), for checks.
    source:       a human-readable note of where the reference came from.
    image:        image-to-video conditioning of the reference pass, or None (text-to-video).
    """

    latent: torch.Tensor
    settings: FastVMTSettings
    conditioning: list | None
    geometry: dict
    source: str = ""
    image: ReferenceImage | None = None

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
                + (f"\n{self.image.describe()}" if self.image is not None else "")
                + (f"\n{self.source}" if self.source else ""))


GEOMETRY_FIELDS = {"model_class": str, "num_blocks": int, "dim": int, "num_heads": int, "latent_channels": int}
_FIX = "re-extract the motion and save it with 'Save Motion'"


class MotionFileError(ValueError):
    """A motion file that cannot be used; the message names the file, the field and the fix."""


def motion_file_bytes(motion: MotionReference) -> bytes:
    """The .safetensors bytes of a motion (see ``read_motion_file`` for the format)."""
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
    image_meta = None
    if motion.image is not None:
        img = motion.image
        image_meta = {"kind": img.kind, "clip_vision": img.clip_vision is not None}
        tensors["image.mask"] = img.mask.detach().float().cpu().contiguous()
        if img.concat_latent is not None:
            tensors["image.concat_latent"] = img.concat_latent.detach().float().cpu().contiguous()
        if img.clip_vision is not None:
            tensors["image.clip_vision"] = img.clip_vision.detach().float().cpu().contiguous()
    metadata = {
        "format": FILE_FORMAT,
        "version": str(FILE_VERSION),
        "settings": json.dumps({k: v for k, v in motion.settings.to_dict().items() if k in EXTRACTION_FIELDS}),
        "geometry": json.dumps(motion.geometry),
        "conditioning": json.dumps(cond_meta),
        "image": json.dumps(image_meta),
        "source": motion.source,
    }
    return save(tensors, metadata=metadata)


def write_motion_file(motion: MotionReference, path: str) -> None:
    """Write a new file; never replaces one (exclusive create: FileExistsError if it exists)."""
    data = motion_file_bytes(motion)
    with open(path, "xb") as fh:
        fh.write(data)


def read_motion_file(path: str, name: str | None = None) -> MotionReference:
    """Read and check a motion file. ``name`` is how errors call it (the user's name for it,
    relative to its folder; never the server's absolute path)."""
    name = name if name is not None else os.path.basename(path)
    try:
        with safe_open(path, framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except Exception:  # safetensors raises several types for damaged or foreign files
        raise MotionFileError(f"motion file '{name}': not a readable .safetensors file (damaged, truncated or "
                              f"another format); {_FIX}") from None
    return parse_motion(meta, tensors, name)


class _FileCheck:
    """Checks of one motion file's parts; every failure names the file, the field and the fix."""

    def __init__(self, meta: dict, tensors: dict, name: str):
        self.meta, self.tensors, self.name = meta, tensors, name

    def fail(self, field_name, problem, fix=_FIX):
        raise MotionFileError(f"motion file '{self.name}': {field_name} {problem}; {fix}")

    def version(self) -> int:
        if self.meta.get("format") != FILE_FORMAT:
            self.fail("format", f"is {self.meta.get('format')!r}: this is not a FastVMT motion",
                      "pick a file saved by the 'Save Motion' node")
        try:
            version = int(self.meta.get("version", ""))
        except ValueError:
            version = -1
        if not 1 <= version <= FILE_VERSION:
            self.fail("version", f"is format version {self.meta.get('version')!r}; this FastVMT reads versions "
                      f"1..{FILE_VERSION}", "update the FastVMT node pack or re-extract the motion")
        return version

    def json_field(self, key, kinds, what):
        if key not in self.meta:
            self.fail(key, "is missing")
        try:
            value = json.loads(self.meta[key])
        except ValueError:
            self.fail(key, "is not valid JSON")
        if not isinstance(value, kinds):
            self.fail(key, f"must be {what}, got {type(value).__name__}")
        return value

    def settings(self) -> FastVMTSettings:
        settings_d = self.json_field("settings", dict, "a JSON object")
        missing = [k for k in EXTRACTION_FIELDS if k not in settings_d]
        extra = sorted(set(settings_d) - set(EXTRACTION_FIELDS))
        if missing or extra:
            self.fail("settings", f"must hold exactly {', '.join(EXTRACTION_FIELDS)}"
                      + (f" (missing {', '.join(missing)})" if missing else "")
                      + (f" (unknown {', '.join(extra)})" if extra else ""))
        tile = settings_d["tile"]
        if not (isinstance(tile, list) and len(tile) == 2 and all(type(t) is int for t in tile)):
            self.fail("settings.tile", f"must be two integers, got {tile!r}")
        try:
            return FastVMTSettings(**settings_d)
        except (ValueError, TypeError) as exc:
            self.fail("settings", f"are invalid ({exc})")

    def geometry(self) -> dict:
        geometry = self.json_field("geometry", dict, "a JSON object")
        for key, kind in GEOMETRY_FIELDS.items():
            value = geometry.get(key)
            if type(value) is not kind or (kind is int and value < 1):
                self.fail(f"geometry.{key}",
                          f"must be {'a positive integer' if kind is int else 'a string'}, got {value!r}")
        return geometry

    def image_meta(self, version: int) -> dict | None:
        image_meta = self.json_field("image", (dict, type(None)), "a JSON object or null") if version >= 2 else None
        if image_meta is not None:
            if set(image_meta) != {"kind", "clip_vision"} or image_meta["kind"] not in IMAGE_KINDS \
                    or type(image_meta["clip_vision"]) is not bool:
                self.fail("image", f'must be {{"kind": {" or ".join(map(repr, IMAGE_KINDS))}, '
                          f'"clip_vision": true|false}}')
            if image_meta["kind"] == "first_frame" and image_meta["clip_vision"]:
                self.fail("image", "kind 'first_frame' carries no CLIP-vision tokens")
        return image_meta

    def tensor_names(self, cond_meta: list | None, image_meta: dict | None) -> None:
        """Exactly the tensors the metadata announces: none missing, none extra."""
        expected = {"reference_latent"}
        for i, entry in enumerate(cond_meta or []):
            if not isinstance(entry, dict) or type(entry.get("pooled")) is not bool:
                self.fail(f"conditioning[{i}]", 'must be {"pooled": true|false}')
            expected.add(f"conditioning.{i}")
            if entry["pooled"]:
                expected.add(f"conditioning.{i}.pooled")
        if image_meta is not None:
            expected.add("image.mask")
            if image_meta["kind"] == "concat":
                expected.add("image.concat_latent")
            if image_meta["clip_vision"]:
                expected.add("image.clip_vision")
        for key in sorted(expected - set(self.tensors)):
            self.fail(f"tensor '{key}'", "is missing")
        for key in sorted(set(self.tensors) - expected):
            self.fail(f"tensor '{key}'", "is not part of the format")

    def tensor(self, key, ndim) -> torch.Tensor:
        t = self.tensors[key]
        if t.dtype != torch.float32:
            self.fail(f"tensor '{key}'", f"must be float32, got {str(t.dtype).replace('torch.', '')}")
        if t.ndim != ndim or t.numel() == 0:
            self.fail(f"tensor '{key}'", f"must be a non-empty {ndim}-d tensor, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            self.fail(f"tensor '{key}'", "contains NaN or infinite values")
        return t

    def latent(self, geometry: dict) -> torch.Tensor:
        latent = self.tensor("reference_latent", 5)
        if latent.shape[0] != 1:
            self.fail("tensor 'reference_latent'", f"must be one clip [1, C, F, H, W], got shape {tuple(latent.shape)}")
        if latent.shape[1] != geometry["latent_channels"]:
            self.fail("tensor 'reference_latent'", f"has {latent.shape[1]} channels but geometry.latent_channels is "
                      f"{geometry['latent_channels']}")
        return latent

    def conditioning(self, cond_meta: list | None) -> list | None:
        if cond_meta is None:
            return None
        return [[self.tensor(f"conditioning.{i}", 3),
                 {"pooled_output": self.tensor(f"conditioning.{i}.pooled", 2)} if entry["pooled"] else {}]
                for i, entry in enumerate(cond_meta)]

    def image(self, image_meta: dict | None, latent: torch.Tensor) -> ReferenceImage | None:
        if image_meta is None:
            return None
        frames_hw = tuple(latent.shape[2:])
        mask = self.tensor("image.mask", 5)
        if tuple(mask.shape) != (1, 1) + frames_hw:
            self.fail("tensor 'image.mask'", f"must have shape {(1, 1) + frames_hw} (the reference latent's frames "
                      f"and size), got {tuple(mask.shape)}")
        if bool(((mask < 0) | (mask > 1)).any()):
            self.fail("tensor 'image.mask'", "must hold values between 0 and 1")
        concat = None
        if image_meta["kind"] == "concat":
            concat = self.tensor("image.concat_latent", 5)
            if tuple(concat.shape) != tuple(latent.shape):
                self.fail("tensor 'image.concat_latent'", f"must have the reference latent's shape "
                          f"{tuple(latent.shape)}, got {tuple(concat.shape)}")
        clip = None
        if image_meta["clip_vision"]:
            clip = self.tensor("image.clip_vision", 3)
            if clip.shape[0] != 1:
                self.fail("tensor 'image.clip_vision'", f"must be one image's tokens [1, tokens, width], got shape "
                          f"{tuple(clip.shape)}")
        return ReferenceImage(kind=image_meta["kind"], mask=mask, concat_latent=concat, clip_vision=clip)


def parse_motion(meta: dict, tensors: dict, name: str) -> MotionReference:
    """The one check of the motion file format: every metadata key and tensor, for presence,
    type, dtype, shape and finite values. Raises MotionFileError naming ``name`` and the field."""
    check = _FileCheck(meta, tensors, name)
    version = check.version()
    settings = check.settings()
    geometry = check.geometry()
    cond_meta = check.json_field("conditioning", (list, type(None)), "a JSON list or null")
    if "source" not in meta:
        check.fail("source", "is missing")
    image_meta = check.image_meta(version)
    check.tensor_names(cond_meta, image_meta)
    latent = check.latent(geometry)
    return MotionReference(latent=latent, settings=settings, conditioning=check.conditioning(cond_meta),
                           geometry=geometry, source=meta["source"], image=check.image(image_meta, latent))
