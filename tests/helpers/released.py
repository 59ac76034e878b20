"""The authors' released FastVMT code (github mayuelala/FastVMT, MIT, commit 34a050b), run
as written next to ours. It is fetched like ComfyUI, never committed: FASTVMT_RELEASED_PATH,
default ~/comfy/FastVMT (.ci/run checks it out there and sets FASTVMT_REQUIRE_RELEASED=1, so
the agreement tests fail rather than skip in CI).

Its pipeline module imports the whole DiffSynth stack (text encoders, VAE, prompters); the
methods under test need only torch, so they are compiled from the file's own source into a
namespace. Their one device assumption, ``torch.arange(..., device='cuda')`` in
``compute_indices``, is answered on the CPU; everything else runs unchanged (its bf16
autocast switches itself off without CUDA, so the comparison is in float32).
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

PINNED_COMMIT = "34a050b"
PIPELINE = Path("diffsynth") / "pipelines" / "wan_video.py"
DIT = Path("diffsynth") / "models" / "wan_video_dit.py"
METHODS = ("compute_tile_AMF", "compute_tile_amf_loss", "compute_indices", "guidance_step", "clean_memory")


def released_root() -> Path | None:
    root = Path(os.environ.get("FASTVMT_RELEASED_PATH") or Path.home() / "comfy" / "FastVMT").expanduser()
    return root if (root / PIPELINE).is_file() and (root / DIT).is_file() else None


def require_released() -> Path:
    root = released_root()
    if root is None:
        msg = (f"the authors' released code was not found (set FASTVMT_RELEASED_PATH, or check out "
               f"mayuelala/FastVMT at {PINNED_COMMIT} into ~/comfy/FastVMT)")
        if os.environ.get("FASTVMT_REQUIRE_RELEASED") == "1" or os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


class _CpuTorch(types.ModuleType):
    """``torch`` as the released methods see it: a 'cuda' device means the CPU."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def arange(*args, **kwargs):
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return torch.arange(*args, **kwargs)


def _methods(root: Path) -> dict:
    tree = ast.parse((root / PIPELINE).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "WanVideoPipeline")
    defs = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in METHODS]
    missing = set(METHODS) - {d.name for d in defs}
    assert not missing, f"the released pipeline lacks {missing}: not the pinned commit {PINNED_COMMIT}?"
    namespace = {"torch": _CpuTorch(), "F": F, "np": np, "gc": gc, "tqdm": lambda it: it}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(root / PIPELINE), "exec"), namespace)
    return {name: namespace[name] for name in METHODS}


class ReleasedPipeline:
    """The state the released methods read from ``self``, with the methods bound to it."""

    def __init__(self, root: Path, num_frames: int, span: int, dit=None, clean_latents=None, scheduler=None):
        for name, fn in _methods(root).items():
            setattr(self, name, types.MethodType(fn, self))
        self.indices_computed = False
        self.torch_dtype, self.device = torch.float32, "cpu"  # the comparison runs in float32 on the CPU
        self.dit, self.clean_latents, self.scheduler = dit, clean_latents, scheduler
        self.weights = released_weights(num_frames, span)

    @staticmethod
    def generate_noise(shape, seed=None, device="cpu", dtype=torch.float16):
        # diffsynth/pipelines/base.py BasePipeline.generate_noise, which this class does not inherit
        generator = None if seed is None else torch.Generator(device).manual_seed(seed)
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def released_weights(num_frames: int, span: int) -> torch.Tensor:
    """The pair weights exactly as the released ``__call__`` builds them (for num_frames > span)."""
    weights = np.linspace(1, 0.8, num=span)
    for i in range(1, num_frames):
        part = np.linspace(1, 0.8, num=span)
        weights = np.concatenate([weights, part if i + span < num_frames else part[:num_frames - i]])
    return torch.tensor(weights, dtype=torch.float32)


def tile_major_to_grid(disp: torch.Tensor, h: int, w: int, tile=(3, 4)) -> torch.Tensor:
    """Released windowed-pair rows [S, 2] (tile-major token order) -> [H, W, 2]."""
    th, tw = tile
    return disp.reshape(h // th, w // tw, th, tw, 2).permute(0, 2, 1, 3, 4).reshape(h, w, 2)


def _released_module(root: Path, relative: Path, name: str):
    """A file of the released package, imported without the diffsynth package's __init__."""
    pkg_name = "fastvmt_released_" + relative.parent.name
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(root / relative.parent)]
        sys.modules[pkg_name] = pkg
    full = f"{pkg_name}.{name}"
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, root / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]


def released_wan_model(root: Path, state_dict: dict, *, dim: int, num_heads: int, num_layers: int, ffn_dim: int,
                       channels: int = 16):
    """The released ``WanModel`` (diffsynth/models/wan_video_dit.py) with ``state_dict`` loaded
    strictly: ComfyUI's Wan keys are the released model's keys."""
    module = _released_module(root, DIT, "wan_video_dit")
    dit = module.WanModel(dim=dim, in_dim=channels, ffn_dim=ffn_dim, out_dim=channels, text_dim=4096, freq_dim=256,
                          eps=1e-6, patch_size=(1, 2, 2), num_heads=num_heads, num_layers=num_layers,
                          has_image_input=False)
    dit.load_state_dict(state_dict, strict=True)
    return dit


def released_scheduler(root: Path, sigma: float):
    """The released ``FlowMatchScheduler`` holding one step at ``sigma`` (timestep 1000 sigma),
    so its ``add_noise`` re-noises the reference exactly there."""
    module = _released_module(root, Path("diffsynth") / "schedulers" / "flow_match.py", "flow_match")
    scheduler = module.FlowMatchScheduler(shift=5, sigma_min=0.0, extra_one_step=True)
    scheduler.sigmas = torch.tensor([float(sigma)])
    scheduler.timesteps = scheduler.sigmas * scheduler.num_train_timesteps
    return scheduler
