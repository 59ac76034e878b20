"""The flow kernels on one device: forward + backward time and peak extra memory.

Sliding-window AMF (span 5, window 21, tile 3x4, with its window loss, as a guided
step runs it), global AMF over the same span, and the same global flow through
``torch.nn.functional.scaled_dot_product_attention`` with the token coordinates as
values (fp32; bf16 too on a GPU), checked against ``global_amf``.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn.functional as F

from bench.amf import PeakMemory
from fastvmt_core.amf import global_amf, sliding_window_amf
from fastvmt_core.losses import window_loss

SPAN, WINDOW, TILE = 5, 21, (3, 4)
GRIDS = {"480p": (21, 30, 52, 128), "720p": (21, 45, 80, 128)}  # latent frames, token rows, cols, head dim
TOY_GRIDS = {"toy 4x6x8": (4, 6, 8, 16), "toy 4x9x12": (4, 9, 12, 16)}


def _sliding(q, k):
    flow = sliding_window_amf(q, k, temporal_span=SPAN, window=WINDOW, tile=TILE)
    return flow.displacement, flow.displacement.pow(2).mean() + window_loss(flow)


def _global(q, k):
    disp = global_amf(q, k, temporal_span=SPAN).displacement
    return disp, disp.pow(2).mean()


def sdpa_same_span(q, k):
    """global_amf's displacement over offsets 1..SPAN in one attention call: every
    (i, i + offset) pair is a batch entry, the values are the token coordinates."""
    f, h, w, d = q.shape
    n = h * w
    ys, xs = torch.meshgrid(torch.arange(h, device=q.device), torch.arange(w, device=q.device), indexing="ij")
    pos = torch.stack([ys, xs], -1).reshape(n, 2).to(q.dtype)
    offsets = range(1, min(SPAN, f - 1) + 1)
    qb = torch.cat([q[: f - o] for o in offsets]).reshape(-1, 1, n, d)
    kb = torch.cat([k[o:] for o in offsets]).reshape(-1, 1, n, d)
    v = F.pad(pos, (0, 6)).expand(qb.shape[0], 1, n, 8).contiguous()  # 8 value columns: fused kernels accept them
    out = F.scaled_dot_product_attention(qb, kb, v, scale=1.0 / math.sqrt(d))
    disp = (out[..., :2].float() - pos.float()).reshape(-1, h, w, 2)
    return disp, disp.pow(2).mean()


def _time(fn, q0, k0, dtype, device, repeats: int):
    def once():
        q = q0.to(dtype).requires_grad_(True)
        k = k0.to(dtype).requires_grad_(True)
        disp, loss = fn(q, k)
        loss.backward()
        return disp.detach().float()

    out = once()  # warm-up
    times, peaks = [], []
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            t0 = time.perf_counter()
            once()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak)
    return out, statistics.median(times), max(peaks) / 2**20


def run(toy: bool, cuda: bool, rec) -> dict:
    device = torch.device("cuda" if cuda else "cpu")
    if toy and not cuda:
        torch.set_num_threads(1)  # toy tensors: thread spin-waits on a shared CPU would cost 100x
    repeats = 2 if toy else 5
    methods = [("sliding_window_amf", _sliding, torch.float32), ("global_amf_same_span", _global, torch.float32),
               ("sdpa_same_span_float32", sdpa_same_span, torch.float32)]
    if cuda:
        methods.append(("sdpa_same_span_bfloat16", sdpa_same_span, torch.bfloat16))
    rows = []
    for name, grid in (TOY_GRIDS if toy else GRIDS).items():
        g = torch.Generator().manual_seed(0)
        q0, k0 = (torch.randn(*grid, generator=g).to(device) for _ in range(2))
        reference = None
        for method, fn, dtype in methods:
            disp, seconds, peak = _time(fn, q0, k0, dtype, device, repeats)
            row = {"grid_name": name, "grid": list(grid), "method": method, "median_s": seconds, "peak_mib": peak}
            if method == "global_amf_same_span":
                reference = disp
            elif method.startswith("sdpa"):
                row["max_abs_diff_vs_global_amf"] = float((disp - reference).abs().max())
            rows.append(row)
            rec.log(f"kernels {name} {method}: {seconds * 1000:.1f} ms, {peak:.0f} MiB"
                    + (f", max abs diff to global_amf {row['max_abs_diff_vs_global_amf']:.2g}"
                       if "max_abs_diff_vs_global_amf" in row else ""))
    return {"span": SPAN, "window": WINDOW, "tile": list(TILE), "repeats": repeats,
            "memory": "peak extra memory during one forward + backward", "rows": rows}
