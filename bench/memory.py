"""Guidance memory: the estimator (fastvmt_core/memory.py) against peaks measured in real ComfyUI.

    python -m bench.memory [--quick] [--json bench_out/memory.json]
    python -m bench.memory --published     # the docs/memory.md table for the published Wan models

Boots ComfyUI in-process (found like the tests), writes tiny random-weight Wan models of
several geometries, and runs one guided step with one inner step (one gradient pass) through the real executor, with
activations kept and recomputed. "measured" is the growth of the resident set during the
latent optimisation of that step (the gradient pass and one optimizer update; the
reference pass and the sampler step are outside it), as the peak of live tensor bytes
from the PyTorch profiler's allocation events. The growth of the resident set is shown
beside it (the process re-starts with MALLOC_MMAP_THRESHOLD_=1048576 so freed tensors go
back to the system, and free heap is trimmed first), but glibc's heap reuse makes that
one noisy. "estimated" is what the Guidance Sampler computed for the run (its report).
CPU, float32 weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from fastvmt_core import FastVMTSettings, WAN_MODELS, gradient_pass_memory, published_geometry
from bench.amf import PeakMemory, machine_line, write_json
from bench.sampling import graph as sampling_graph

# dim, ffn_dim, blocks, motion_block, latent (frames, height, width): 1536-2560 tokens
# (CPU attention time grows with the square of the tokens; the test suite runs these).
CASES = [
    (256, 1024, 8, 6, (5, 32, 48)),
    (384, 1536, 6, 4, (5, 32, 64)),
    (128, 512, 12, 10, (5, 32, 48)),
    (256, 2048, 8, 7, (3, 32, 64)),
]
# Tensors from 1 MiB up get their own mapping, returned to the system when freed.
MMAP_THRESHOLD = "1048576"


def graph(model: str, *, frames: int, lat_h: int, lat_w: int, block: int, seed: int, keep: str) -> dict:
    """One guided step with one inner step (bench.sampling's graph)."""
    return sampling_graph(model, frames=frames, lat_h=lat_h, lat_w=lat_w, steps=1, seed=seed, block=block, cfg=1.0,
                          overrides={"inner_steps": 1, "interval": 1, "guided_fraction": 1.0,
                                     "keep_activations": keep})


class TensorPeak:
    """Peak bytes of live CPU tensors allocated inside the block: the running sum of the
    PyTorch profiler's allocation events (allocator level, so glibc's heap reuse and
    fragmentation do not count)."""

    def __enter__(self):
        import torch
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
        self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        import torch
        self.prof.__exit__(*exc)
        events = [e for e in self.prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
        live = self.peak = 0
        for e in sorted(events, key=lambda e: e.start_ns()):
            live += e.nbytes()
            self.peak = max(self.peak, live)
        return False


def measure(cases=CASES) -> list[dict]:
    import torch
    import comfy_host
    host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-bench-memory-"))
    host.require_pack()
    guidance = comfy_host.pack_module("nodes.wan.guided_step")
    optimize, peaks = guidance.optimize_latent, []

    def measured_optimize(*args, **kwargs):
        with PeakMemory(torch.device("cpu")) as mem, TensorPeak() as tensors:
            out = optimize(*args, **kwargs)
        peaks.append((mem.peak, tensors.peak))
        return out

    guidance.optimize_latent = measured_optimize
    try:
        return _measure(host, cases, peaks)
    finally:
        guidance.optimize_latent = optimize


def _measure(host, cases, peaks) -> list[dict]:
    rows = []
    for dim, ffn, blocks, block, (f, h, w) in cases:
        model = host.tiny_wan(dim=dim, num_layers=blocks, ffn_dim=ffn)
        for i, keep in enumerate(("never", "always")):
            g = lambda seed: graph(model, frames=f, lat_h=h, lat_w=w, block=block, seed=seed, keep=keep)  # noqa: E731
            peaks.clear()
            res = host.run_graph(g(101 + i), keep_cache=True).raise_for_error()
            ((rss, peak),) = peaks
            report = res.ui_output("sample")["fastvmt_report"][0]
            est = report["memory"]
            assert (est["kept_blocks"] > 0) == (keep == "always"), est
            tokens = f * (h // 2) * (w // 2)
            rows.append({"dim": dim, "ffn_dim": ffn, "motion_block": block, "latent": [f, h, w], "tokens": tokens,
                         "keep_activations": keep == "always", "estimated_mib": est["estimate"] / 2**20,
                         "measured_mib": peak / 2**20, "ratio": peak / est["estimate"],
                         "resident_mib": rss / 2**20})
            host.reset(unload_models=True)
    return rows


def published_rows() -> list[dict]:
    """Estimated gradient-pass memory for the published models (bf16, default settings)."""
    s = FastVMTSettings()
    rows = []
    for model in WAN_MODELS:
        for width, height in ((832, 480), (1280, 720)):
            g = published_geometry(model, width, height, 81)
            recomputed = gradient_pass_memory(g, s, kept_blocks=0)
            kept = gradient_pass_memory(g, s, kept_blocks=s.motion_block)
            rows.append({"model": model, "size": f"{width}x{height}x81", "tokens": g.tokens,
                         "recomputed_gib": recomputed.gib(), "kept_gib": kept.gib()})
    return rows


def format_measured(rows) -> str:
    out = ["| dim / ffn | motion block | latent (F x H x W) | tokens | activations | estimated (MiB) | "
           "measured (MiB) | measured / estimated | resident set grew (MiB) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, h, w = r["latent"]
        out.append(f"| {r['dim']} / {r['ffn_dim']} | {r['motion_block']} | {f} x {h} x {w} | {r['tokens']} | "
                   f"{'kept' if r['keep_activations'] else 'recomputed'} | {r['estimated_mib']:.0f} | "
                   f"{r['measured_mib']:.0f} | {r['ratio']:.2f} | {r['resident_mib']:.0f} |")
    return "\n".join(out)


def format_published(rows) -> str:
    out = ["| model | video | tokens | gradient pass, activations recomputed (GiB) | kept (GiB) |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['size']} | {r['tokens']} | {r['recomputed_gib']:.1f} | "
                   f"{r['kept_gib']:.1f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--published", action="store_true", help="print the estimates for the published models only")
    p.add_argument("--cases", nargs="+", type=int, choices=range(len(CASES)),
                   help="indices into CASES to measure (default: all)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.published:
        print(format_published(published_rows()))
        return 0
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "bench.memory", *argv], env)
    rows = measure(CASES if args.cases is None else [CASES[i] for i in args.cases])
    print(f"Machine: {machine_line('cpu')}\n")
    print(format_measured(rows))
    print()
    print(format_published(published_rows()))
    if args.json:
        write_json(args.json, {"machine": machine_line("cpu"), "measured": rows, "published": published_rows()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
