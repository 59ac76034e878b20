"""Benchmark of the method's own kernels (no ComfyUI needed).

    python -m bench.amf [--repeats 3] [--json out.json] [--sizes paper,source]

Forward + backward of ``sliding_window_amf`` against ``global_amf`` with the
same temporal span and against ``global_amf`` over all frame pairs (the DiTFlow way),
on random queries/keys. Sizes: ``paper`` = 21 latent frames x 30 x 52 tokens, D 128
(480x832, 81 frames on Wan 2.1); ``source`` = the native size of
shared/data/source.mp4 (640x368, 81 frames -> 21 x 23 x 40 tokens).

Peak memory is the growth of the process's peak resident set during one call (CPU,
Linux: the peak is reset through /proc/self/clear_refs) or torch's peak allocation
on CUDA. Times are medians of ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date

import torch

from fastvmt_core.amf import global_amf, sliding_window_amf
from fastvmt_core.losses import window_loss

SIZES = {
    "paper": (21, 30, 52, 128),
    "source": (21, 23, 40, 128),
    "tiny": (4, 6, 8, 16),  # smoke test of the command itself
}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory (bytes) used inside the block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _malloc_trim()  # freed heap pages would otherwise be reused without growing the resident set
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.base = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.peak = _rss_kib("VmHWM") * 1024 - self.base
        return False


def _amf_step(kind: str, q0, k0, span: int, window: int, tile):
    """One forward + backward, as the guidance inner loop does it."""
    q = q0.clone().requires_grad_(True)
    k = k0.clone().requires_grad_(True)
    if kind == "sliding":
        flow = sliding_window_amf(q, k, temporal_span=span, window=window, tile=tile)
        loss = flow.displacement.pow(2).mean() + window_loss(flow)
    else:
        flow = global_amf(q, k, temporal_span=span if kind == "global_span" else None)
        loss = flow.displacement.pow(2).mean()
    loss.backward()
    return flow.pairs.shape[0]


def bench_amf(sizes=("paper", "source"), repeats: int = 3, span: int = 5, window: int = 21,
              tile=(3, 4), device: str = "cpu") -> list[dict]:
    dev = torch.device(device)
    rows = []
    for size in sizes:
        f, h, w, d = SIZES[size]
        g = torch.Generator().manual_seed(0)
        q0 = torch.randn(f, h, w, d, generator=g).to(dev)
        k0 = torch.randn(f, h, w, d, generator=g).to(dev)
        for kind, label in (("sliding", f"sliding window (span {span}, window {window})"),
                            ("global_span", f"global, same span {span}"),
                            ("global_all", "global, all pairs (DiTFlow)")):
            _amf_step(kind, q0, k0, span, window, tile)  # warm-up
            times, peaks = [], []
            for _ in range(repeats):
                with PeakMemory(dev) as mem:
                    t0 = time.perf_counter()
                    pairs = _amf_step(kind, q0, k0, span, window, tile)
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                    times.append(time.perf_counter() - t0)
                peaks.append(mem.peak)
            rows.append({"size": size, "grid": [f, h, w, d], "method": kind, "label": label, "pairs": pairs,
                         "median_s": statistics.median(times), "peak_mib": max(peaks) / 2**20})
        base = {r["method"]: r for r in rows if r["size"] == size}
        for r in rows:
            if r["size"] == size:
                r["speedup_vs_this"] = None
        sw = base["sliding"]
        for r in (base["global_span"], base["global_all"]):
            r["sliding_speedup"] = r["median_s"] / sw["median_s"]
            r["sliding_memory_ratio"] = r["peak_mib"] / max(sw["peak_mib"], 1e-9)
    return rows


def format_amf_table(rows: list[dict]) -> str:
    lines = ["| size | method | pairs | median fwd+bwd (s) | peak extra memory (MiB) | sliding is x faster | x less memory |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        f, h, w, d = r["grid"]
        faster = f"{r['sliding_speedup']:.2f}" if "sliding_speedup" in r else "-"
        less = f"{r['sliding_memory_ratio']:.2f}" if "sliding_memory_ratio" in r else "-"
        lines.append(f"| {r['size']} {f}x{h}x{w}, D {d} | {r['label']} | {r['pairs']} | {r['median_s']:.3f} | "
                     f"{r['peak_mib']:.0f} | {faster} | {less} |")
    return "\n".join(lines)


def write_json(path, results) -> None:
    """Write a benchmark's results as JSON (numpy / torch scalars as floats)."""
    from pathlib import Path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results, indent=2, default=float))


def machine_line(device: str) -> str:
    import os
    cpu = platform.processor() or platform.machine()
    if device.startswith("cuda"):
        cpu = torch.cuda.get_device_name(torch.device(device))
    return (f"{date.today().isoformat()}, {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, device {device}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.amf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="paper,source", help="comma list of: " + ", ".join(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--span", type=int, default=5)
    parser.add_argument("--window", type=int, default=21)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        parser.error(f"unknown size(s) {bad}; choose from {', '.join(SIZES)}")
    rows = bench_amf(sizes, repeats=args.repeats, span=args.span, window=args.window, device=args.device)
    print(f"AMF forward + backward ({machine_line(args.device)})")
    print(format_amf_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine_line(args.device), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
