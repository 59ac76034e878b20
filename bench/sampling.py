"""End-to-end sampling benchmark through the real ComfyUI node path.

    python -m bench.sampling [--quick] [--repeats 3] [--json bench_out/sampling.json]

Boots ComfyUI in-process (found like the tests: COMFYUI_PATH, the pack's parent
ComfyUI, ~/comfy/ComfyUI), writes a tiny random-weight Wan with the 1.3B block count
(30 blocks, dim 256), and runs graphs through ComfyUI's real executor: the stock
KSampler for "plain", FastVMT Guidance Sampler + Step-Skip Settings for the rest.
Same seed, same inputs, one process. Prints three tables (configurations; guidance
time against latent frames; the reviewers' sweep) and writes them as JSON.

Conditioning comes from the test-only stand-in node (comfy_host/stand_in_nodes/), because no
UMT5-XXL text encoder can exist here. cfg 6 makes each plain step two DiT passes,
as in real Wan sampling. Absolute seconds on a CPU mean little; the ratios are the
result. Memory: the process is re-started with MALLOC_MMAP_THRESHOLD_=65536 so large
tensors are returned to the system when freed; "peak extra" is then the growth of
the resident set during one sampling run (activations, guidance state), "peak total"
the resident set's peak including the loaded model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from fastvmt_core import FastVMTSettings
from bench.amf import PeakMemory, machine_line, write_json

CONFIGS = [  # name, Step-Skip Settings overrides (None: stock KSampler), what it is
    ("plain", None, "stock KSampler, no guidance"),
    ("FastVMT", {}, "sliding-window AMF, interval 3, early exit after the motion block; keep_activations auto "
                    "(kept here: the estimate fits)"),
    ("FastVMT, recomputed", {"keep_activations": "never"}, "as FastVMT, activations recomputed per block"),
    ("no skip", {"interval": 1}, "interval 1"),
    ("no early exit", {"exit_block": 999}, "the full DiT forward and head in guidance passes"),
    ("released-code structure", {"exit_block": 20}, "guidance passes truncated after block 20, interval 3"),
    ("full AMF", {"mode": "AMF", "exit_block": 999}, "global flow over all frame pairs, interval 1, full forward"),
]
BLOCK = 14


def settings_inputs(**overrides):
    """Step-Skip Settings node inputs: the defaults of FastVMTSettings, with ``overrides``."""
    return FastVMTSettings().step_skip_inputs(**overrides)


def graph(model: str, *, frames: int, lat_h: int, lat_w: int, steps: int, seed: int, overrides: dict | None,
          window: int = 21, span: int = 5, block: int = BLOCK, cfg: float = 6.0, sampler: str = "euler",
          tile: tuple[int, int] = (3, 4), text_tokens: int = 16) -> dict:
    """UNETLoader + stand-in conditioning + random reference latent + Extract Motion, then the
    stock KSampler (``overrides`` None) or the Guidance Sampler with Step-Skip Settings
    (``overrides`` on the defaults); built with ComfyUI's GraphBuilder."""
    from comfy_execution.graph_utils import GraphBuilder
    g = GraphBuilder(prefix="")
    unet = g.node("UNETLoader", "model", unet_name=model, weight_dtype="default")
    pos = g.node("FastVMTTestConditioning", "pos", seed=1, tokens=text_tokens, text="a red fox")
    neg = g.node("FastVMTTestConditioning", "neg", seed=2, tokens=text_tokens, text="blurry")
    ref = g.node("FastVMTTestLatent", "ref", seed=3, channels=16, frames=frames, height=lat_h, width=lat_w)
    empty = g.node("FastVMTTestLatent", "empty", seed=4, channels=16, frames=frames, height=lat_h, width=lat_w,
                   scale=0.0)
    common = dict(model=unet.out(0), seed=seed, steps=steps, cfg=cfg, sampler_name=sampler, scheduler="simple",
                  positive=pos.out(0), negative=neg.out(0), latent_image=empty.out(0), denoise=1.0)
    if overrides is None:
        sample = g.node("KSampler", "sample", **common)
    else:
        motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), latent=ref.out(0), width=lat_w * 8,
                        height=lat_h * 8, length=(frames - 1) * 4 + 1, motion_block=block, temporal_span=span,
                        window=window, tile_rows=tile[0], tile_cols=tile[1], tau=1.0)
        settings = g.node("FastVMTStepSkipSettings", "settings", **settings_inputs(**overrides))
        sample = g.node("FastVMTGuidanceSampler", "sample", **common, motion=motion.out(0), settings=settings.out(0))
    g.node("FastVMTTestInspect", "out", value=sample.out(0))
    return g.finalize()


def measure(host, g_for_seed, repeats: int) -> dict:
    """Warm-up, then ``repeats`` runs with fresh seeds (so the sampler is not served from cache)."""
    import torch
    host.run_graph(g_for_seed(1000), keep_cache=False).raise_for_error()
    times, peaks, totals, reports = [], [], [], []
    for r in range(repeats):
        g = g_for_seed(r)
        with PeakMemory(torch.device("cpu")) as mem:
            t0 = time.perf_counter()
            res = host.run_graph(g, keep_cache=True).raise_for_error()
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak)
        totals.append(_peak_rss_mib())
        reports.append(res.ui_output("sample").get("fastvmt_report", [{}])[0])
    rep = reports[len(reports) // 2]
    final = [e["losses"][-1] for e in rep.get("steps", []) if e["losses"]]
    return {"total_s": statistics.median(times), "guidance_s": statistics.median(
        r.get("guidance_seconds", 0.0) for r in reports), "block_evaluations": rep.get("block_evaluations", 0),
        "dit_passes": rep.get("dit_passes", 0), "peak_mib": max(peaks) / 2**20, "peak_total_mib": max(totals),
        "final_loss": final[-1] if final else None, "times": times}


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


TABLES = ("configurations", "frames", "sweep")


def run(quick: bool, repeats: int, smoke: bool = False, tables=TABLES, configs=None) -> dict:
    import comfy_host
    host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-bench-"))
    host.require_pack()
    # smoke: the smallest run that still exercises every row (the test suite runs it)
    model = host.tiny_wan(dim=256, num_layers=16 if smoke else 30, ffn_dim=512)
    steps = 5 if smoke else 10 if quick else 20
    frames, lat_h, lat_w = (3, 8, 12) if smoke else (5, 16, 24)  # 5 x 8 x 12 tokens
    results = {"machine": machine_line("cpu"), "setup": {
        "model": f"random Wan 2.1 layout, {16 if smoke else 30} blocks, dim 256, ffn 512", "latent": [16, frames, lat_h, lat_w],
        "steps": steps, "guided_fraction": 0.2, "inner_steps": 10, "cfg": 6.0, "sampler": "euler/simple",
        "motion_block": BLOCK, "repeats": repeats}}

    rows = []
    chosen = [c for c in CONFIGS if configs is None or c[0] in configs or c[0] in ("plain", "FastVMT")]
    for name, overrides, what in (chosen if "configurations" in tables else []):
        if smoke and overrides and overrides.get("exit_block") == 20:
            overrides = {**overrides, "exit_block": 15}
        m = measure(host, lambda s: graph(model, frames=frames, lat_h=lat_h, lat_w=lat_w, steps=steps, seed=s,
                                          overrides=overrides), repeats)
        rows.append({"config": name, "what": what, **m})
    plain, fast = (rows[0], rows[1]) if rows else (None, None)
    for r in rows:
        r["x_plain"] = r["total_s"] / plain["total_s"]
        r["x_fastvmt"] = r["total_s"] / fast["total_s"]
        r["peak_x_plain"] = r["peak_mib"] / max(plain["peak_mib"], 1e-9)
    results["configurations"] = rows

    scaling = []
    for f in ((3,) if smoke else (3, 5) if quick else (3, 5, 9, 17)) if "frames" in tables else ():
        for name, overrides in (("FastVMT", {}), ("full AMF", {"mode": "AMF", "exit_block": 999})):
            m = measure(host, lambda s: graph(model, frames=f, lat_h=lat_h, lat_w=lat_w, steps=steps, seed=s,
                                              overrides=overrides), 1 if quick else max(1, repeats - 1))
            scaling.append({"latent_frames": f, "config": name, **m})
    results["frames"] = scaling

    sweep = []
    grid = [] if "sweep" not in tables else ([("interval", 1), ("window", 11)] if smoke else [("interval", 1), ("interval", 3)] if quick else
            [("interval", v) for v in (1, 2, 3, 4)] + [("window", v) for v in (11, 21, 31)]
            + [("span", v) for v in (3, 5, 7)])
    s_h, s_w, s_f = (lat_h, lat_w, frames) if smoke else (16, 24, 5) if quick else (32, 48, 7)
    for knob, value in grid:
        kw = {"window": value} if knob == "window" else {"span": value} if knob == "span" else {}
        overrides = {"interval": value} if knob == "interval" else {}
        m = measure(host, lambda s: graph(model, frames=s_f, lat_h=s_h, lat_w=s_w, steps=steps if smoke else 5, seed=s,
                                          overrides=overrides, **kw), 1)
        sweep.append({"knob": knob, "value": value, **m})
    results["sweep"] = sweep
    results["sweep_setup"] = {"latent": [16, s_f, s_h, s_w], "steps": 5, "guided_steps": 1}
    return results


def format_tables(res: dict) -> str:
    out = [f"Machine: {res['machine']}", f"Setup: {json.dumps(res['setup'])}", "",
           "| configuration | what it is | total (s) | guidance (s) | DiT block evaluations in guidance | "
           "peak extra (MiB) | peak total (MiB) | time x plain | FastVMT faster by | peak extra x plain |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["configurations"]:
        out.append(f"| {r['config']} | {r['what']} | {r['total_s']:.2f} | {r['guidance_s']:.2f} | "
                   f"{r['block_evaluations']} | {r['peak_mib']:.0f} | {r['peak_total_mib']:.0f} | "
                   f"{r['x_plain']:.2f} | {r['x_fastvmt']:.2f} | {r['peak_x_plain']:.2f} |")
    out += ["", "| latent frames | configuration | guidance (s) | total (s) | DiT passes |", "|---|---|---|---|---|"]
    for r in res["frames"]:
        out.append(f"| {r['latent_frames']} | {r['config']} | {r['guidance_s']:.2f} | {r['total_s']:.2f} | "
                   f"{r['dit_passes']} |")
    out += ["", f"Sweep (FastVMT, latent {res['sweep_setup']['latent']}, one guided step):", "",
            "| knob | value | guidance (s) | motion loss at the end of guidance |", "|---|---|---|---|"]
    for r in res["sweep"]:
        loss = f"{r['final_loss']:.4g}" if r["final_loss"] is not None else "-"
        out.append(f"| {r['knob']} | {r['value']} | {r['guidance_s']:.2f} | {loss} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sampling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer steps and sizes (about 5 minutes)")
    p.add_argument("--smoke", action="store_true", help="tiniest settings, every row (the test suite runs this)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (median)")
    p.add_argument("--configs", nargs="+", choices=[c[0] for c in CONFIGS],
                   help="configuration rows to measure (plain and FastVMT always are)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES), help="which tables to measure")
    args = p.parse_args(argv)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        # Re-start so the allocator returns freed tensors to the system (see the module doc).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, "-m", "bench.sampling", *argv], env)
    res = run(args.quick, args.repeats, args.smoke, tables=args.tables, configs=args.configs)
    print(format_tables(res))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
