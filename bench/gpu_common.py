"""Pieces shared by ``bench.gpu`` and its card subprocesses (``bench.gpu_cards``).

Nothing here imports ComfyUI at module level: a card subprocess must patch
``torch.cuda.mem_get_info`` before ComfyUI's model management is imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layout:
    """A random-weight Wan 2.1 T2V model and the latent it samples."""
    key: str                 # "1.3b" or "14b"
    label: str
    dim: int
    layers: int
    ffn: int
    dtype: str               # torch dtype name of the written file
    latent: tuple            # (frames, height, width) of the latent
    text_tokens: int
    motion_block: int
    released_exit: int       # the released code's guidance passes stop after this block

    def model_name(self, toy: bool) -> str:
        return f"bench_gpu_{self.key.replace('.', '')}{'_toy' if toy else ''}.safetensors"

    def video(self) -> str:
        f, h, w = self.latent
        return f"{w * 8}x{h * 8}x{(f - 1) * 4 + 1}"


# The real Wan 2.1 layouts at 832x480x81 (latent 21 x 60 x 104, 512 text tokens) ...
FULL = {
    "1.3b": Layout("1.3b", "Wan 2.1 1.3B layout (dim 1536, 30 blocks, ffn 8960), bf16 file", 1536, 30, 8960,
                   "bfloat16", (21, 60, 104), 512, 14, 20),
    "14b": Layout("14b", "Wan 2.1 14B layout (dim 5120, 40 blocks, ffn 13824), fp8 e4m3fn file", 5120, 40, 13824,
                  "float8_e4m3fn", (21, 60, 104), 512, 14, 20),
}
# ... and the toy stand-ins (same code paths, seconds on a CPU): 4 blocks, motion block 1.
TOY = {
    "1.3b": Layout("1.3b", "toy stand-in for 1.3B (dim 128, 4 blocks, ffn 256), bf16 file", 128, 4, 256,
                   "bfloat16", (3, 8, 12), 16, 1, 2),
    "14b": Layout("14b", "toy stand-in for 14B (dim 256, 4 blocks, ffn 512), fp8 e4m3fn file", 256, 4, 512,
                  "float8_e4m3fn", (3, 8, 12), 16, 1, 2),
}


def layouts(toy: bool) -> dict:
    return TOY if toy else FULL


class Recorder:
    """Results as JSON and a log, both written again after every measurement, so a
    run killed part-way keeps what it measured."""

    def __init__(self, json_path: str | None, log_path: str | None, data: dict | None = None):
        self.json_path = Path(json_path) if json_path else None
        self.log_path = Path(log_path) if log_path else None
        self.data = data if data is not None else {}
        self.t0 = time.monotonic()
        for p in (self.json_path, self.log_path):
            if p is not None:
                p.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path is not None:
            self.log_path.write_text("")

    def log(self, msg: str) -> None:
        line = f"[{time.monotonic() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        if self.log_path is not None:
            with open(self.log_path, "a") as fh:
                fh.write(line + "\n")

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        if self.json_path is None:
            return
        tmp = self.json_path.with_name(self.json_path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_jsonable))
        os.replace(tmp, self.json_path)


def _jsonable(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def commit() -> str | None:
    """The repository's commit (``$FASTVMT_COMMIT`` where the copy has no .git)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("FASTVMT_COMMIT") or None


def sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Peak:
    """Peak memory of a block, absolute: ``torch.cuda.max_memory_allocated`` (reset on
    entry) on a GPU, the process's peak resident set (reset on entry) on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.gib = None
        self.alloc_retries = None   # CUDA caching-allocator retries (cache flushed and re-allocated) in the block

    def __enter__(self):
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._retries0 = torch.cuda.memory_stats().get("num_alloc_retries", 0)
        else:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        return self

    def __exit__(self, *exc):
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            self.gib = torch.cuda.max_memory_allocated() / 2**30
            # A card at its cap shows here: every retry frees the cache and re-allocates (synchronously).
            self.alloc_retries = torch.cuda.memory_stats().get("num_alloc_retries", 0) - self._retries0
        else:
            with open("/proc/self/status") as fh:
                kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
            self.gib = kib / 2**20
        return False


def peak_kind(cuda: bool) -> str:
    return "torch.cuda.max_memory_allocated, reset per row" if cuda else "peak resident set of the process (CPU)"


def boot_host(base: Path, cuda: bool):
    """The repo's in-process ComfyUI host on ``base`` (shared by the card subprocesses,
    so model files written once are found by all)."""
    import comfy_host
    host = comfy_host.bootstrap(base, cpu=not cuda)
    host.require_pack()
    return host


def write_model(host, layout: Layout, toy: bool) -> str:
    """The layout's random-weight model through the host's tiny-model factory (kept when
    another process of this run already wrote it)."""
    import torch
    name = host.tiny_wan(name=layout.model_name(toy), dim=layout.dim, num_layers=layout.layers,
                         ffn_dim=layout.ffn, dtype=getattr(torch, layout.dtype))
    host.refresh_file_lists()
    return name


def make_graph(model: str, layout: Layout, *, steps: int, seed: int, overrides: dict | None) -> dict:
    from bench.sampling import graph
    f, h, w = layout.latent
    return graph(model, frames=f, lat_h=h, lat_w=w, steps=steps, seed=seed, overrides=overrides,
                 block=layout.motion_block, text_tokens=layout.text_tokens)


@dataclass
class Run:
    wall_s: float
    report: dict
    peak_gib: float | None
    latent: object = None
    alloc_retries: int | None = None


def run_timed(host, graph: dict, cuda: bool, *, want_latent: bool = False) -> Run:
    """Run ``graph`` (keeping ComfyUI's cache: the loader and Extract Motion run once);
    raise on a failed node."""
    with Peak(cuda) as peak:
        t0 = time.perf_counter()
        res = host.run_graph(graph, keep_cache=True)
        sync()
        wall = time.perf_counter() - t0
    res.raise_for_error()
    report = (res.ui_output("sample").get("fastvmt_report") or [{}])[0]
    latent = res.output("sample", 0)["samples"].float().cpu() if want_latent else None
    return Run(wall, report, peak.gib, latent, peak.alloc_retries)
