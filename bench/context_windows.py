"""Guidance through ComfyUI's context windows on the shapes v2 model: a reference longer than
one window, its known motion, and what overlap costs.

    python -m bench.context_windows [--seeds 0,1,2] [--frames 28] [--context 12] [--overlaps 4,8]
                                    [--steps 12] [--starts t2v] [--json out.json]

Every run is one graph in ComfyUI's real executor: LoadLatent (a ``bench.shapes_v2`` clip of
``--frames`` latent frames, the camera always moving), Extract Motion on all of it, WAN
Context Windows (Manual) (standard_static, ``--context`` latent frames per window, each of
``--overlaps``), Step-Skip Settings and the Guidance Sampler. Rows: no transfer (plain
windowed sampling) and FastVMT, per overlap.

Scores, model-free, against the reference's ground truth (``bench.known_motion``: camera
cosine / endpoint error, shape-path step cosine), on the whole clip, on each window's
frames, and on each seam: the frames from ``span`` before the later window's first frame
to ``span`` after the earlier window's last, where the fused result passes from one
window to the next. Each gets the paired per-seed difference FastVMT - no transfer.
Seconds per run (wall, this machine) give the cost of overlap and of guidance.

Read the scores with ``python -m bench.quality --check-model`` in mind: a model whose
attention carries no motion at the guided sigmas cannot show transfer, through windows or
without them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, replace

import torch

from bench import quality_common as q
from bench import quality_v3 as l3
from bench import shapes, shapes_v2
from bench.amf import machine_line, write_json

METRICS = ("camera_cos", "camera_epe_px", "shape_cos")
LATENT_TO_VIDEO = 4


@dataclass(frozen=True)
class Options:
    seeds: tuple = (0, 1, 2)
    frames: int = 28            # latent frames of reference and generation (109 video frames)
    context: int = 12           # latent frames per window (the model was trained on 12)
    overlaps: tuple = (4, 8)    # latent frames
    steps: int = 12
    cfg: float = 4.0
    span: int = 3
    window: int = 9
    starts: tuple = ("t2v",)
    block: int | None = None    # None: the middle block of the model, as level 3

    @property
    def spec(self) -> shapes_v2.ClipSpecV2:
        return replace(l3.REFERENCE_SPEC, frames=self.frames)


def static_windows(frames: int, length: int, overlap: int) -> list[list[int]]:
    """ComfyUI's standard_static schedule (comfy/context_windows.py), for the seams."""
    if frames <= length:
        return [list(range(frames))]
    out, start = [], 0
    while True:
        if start + length >= frames:
            out.append(list(range(frames - length, frames)))
            return out
        out.append(list(range(start, start + length)))
        start += length - overlap


def segments(windows: list[list[int]], span: int, frames: int) -> list[tuple[str, list[int]]]:
    """("window k", its frames) for each window and ("seam k", frames across it) for each seam."""
    out = [(f"window {i}", w) for i, w in enumerate(windows)]
    for i, (a, b) in enumerate(zip(windows, windows[1:])):
        out.append((f"seam {i}", list(range(max(0, b[0] - span), min(frames, a[-1] + span + 1)))))
    return out


def cut(ref: dict, frames: list[int]) -> dict:
    """The reference's ground truth on some frames (camera matrices are per frame; paths too)."""
    return {**ref, "intensity": ref["intensity"][frames], "camera": ref["camera"][frames],
            "paths": ref["paths"][:, frames]}


def graph(model: str, ref: dict, ref_name: str, seed: int, opts: Options, overlap: int, row: str,
          start: str) -> dict:
    g = q.level2_graph(model, ref_name, shapes.CLASSES[ref["b"]], spec=opts.spec, seed=seed,
                       overrides=q.CONFIGS[row], block=opts.block, steps=opts.steps, cfg=opts.cfg,
                       window=opts.window, span=opts.span, denoise=1.0 if start == "t2v" else 0.75)
    g["windows"] = {"class_type": "WanContextWindowsManual", "inputs": {
        "model": ["model", 0], "context_length": LATENT_TO_VIDEO * (opts.context - 1) + 1,
        "context_overlap": LATENT_TO_VIDEO * (overlap - 1) + 1, "context_schedule": "standard_static",
        "context_stride": 1, "closed_loop": False, "fuse_method": "pyramid"}}
    g["sample"]["inputs"]["model"] = ["windows", 0]
    return g


def run_one(host, model, case, opts: Options, overlap: int, row: str, start: str) -> dict:
    seed, ref, name = case
    t0 = time.perf_counter()
    result = host.run_graph(graph(model, ref, name, seed, opts, overlap, row, start)).raise_for_error()
    seconds = time.perf_counter() - t0
    gen = shapes.decode(q.model_space(result.output("sample", 0)))[0]
    report = result.ui_output("sample").get("fastvmt_report", [{}])[0]
    windows = static_windows(opts.frames, opts.context, overlap)
    scores = {"whole": l3.known_scores(ref, gen)}
    for label, frames in segments(windows, opts.span, opts.frames):
        scores[label] = l3.known_scores(cut(ref, frames), gen[frames])
    return {"seed": seed, "row": row, "overlap": overlap, "start": start, "seconds": seconds,
            "windows": len(windows), "guided_windows": [s.get("windows") for s in report.get("steps", [])],
            "scores": scores}


def paired(runs: list, overlap: int, start: str, segment: str, metric: str) -> dict:
    by = {(r["row"], r["seed"]): r["scores"][segment][metric] for r in runs
          if r["overlap"] == overlap and r["start"] == start}
    seeds = sorted(s for row, s in by if row == "FastVMT" and ("no transfer", s) in by)
    diffs = [by[("FastVMT", s)] - by[("no transfer", s)] for s in seeds]
    base = [by[("no transfer", s)] for s in seeds]
    return {"base": statistics.fmean(base), "diff": statistics.fmean(diffs),
            "above": sum(d > 0 for d in diffs), "n": len(diffs)} if diffs else {}


def summarise(runs: list, opts: Options) -> list:
    rows = []
    for start in opts.starts:
        for overlap in opts.overlaps:
            labels = [lab for lab, _ in segments(static_windows(opts.frames, opts.context, overlap), opts.span,
                                                 opts.frames)]
            for segment in ["whole", *labels]:
                rows.append({"start": start, "overlap": overlap, "segment": segment,
                             **{m: paired(runs, overlap, start, segment, m) for m in METRICS}})
    return rows


def costs(runs: list) -> list:
    out = []
    for (overlap, row) in sorted({(r["overlap"], r["row"]) for r in runs}):
        sec = [r["seconds"] for r in runs if r["overlap"] == overlap and r["row"] == row]
        out.append({"overlap": overlap, "row": row, "windows": next(r["windows"] for r in runs
                                                                    if r["overlap"] == overlap),
                    "seconds_mean": statistics.fmean(sec), "runs": len(sec)})
    return out


def run(host, opts: Options) -> dict:
    model = q.install_shapes_model(host, l3.V2_MODEL)
    if opts.block is None:
        opts = replace(opts, block=l3.model_blocks(l3.V2_MODEL) // 2)
    cases = []
    for seed in opts.seeds:
        ref = l3.reference(seed, opts.spec)
        cases.append((seed, ref, q.put_latent(ref["latent"], f"fastvmt_cw_{opts.frames}_{seed}")))
    runs = []
    for start in opts.starts:
        for overlap in opts.overlaps:
            for case in cases:
                for row in ("no transfer", "FastVMT"):
                    runs.append(run_one(host, model, case, opts, overlap, row, start))
                    print(f"  {start} overlap {overlap} seed {case[0]} {row}: {runs[-1]['seconds']:.1f}s", flush=True)
    return {"setup": {**{k: getattr(opts, k) for k in ("seeds", "frames", "context", "overlaps", "steps", "cfg",
                                                        "span", "window", "starts", "block")},
                      "model": l3.V2_MODEL.name},
            "runs": runs, "summary": summarise(runs, opts), "costs": costs(runs),
            "reference_check": [{"seed": s, "whole": l3.known_scores(ref, ref["intensity"])} for s, ref, _ in cases]}


def _cell(d: dict) -> str:
    return f"{d['base']:.3f} {d['diff']:+.3f} ({d['above']}/{d['n']})" if d else "-"


def format_result(res: dict) -> str:
    lines = ["segment | overlap | camera cos: no transfer, FastVMT - no transfer (seeds above) | camera EPE px | "
             "shape cos"]
    for row in res["summary"]:
        lines.append(f"{row['start']} {row['segment']} | {row['overlap']} | " +
                     " | ".join(_cell(row[m]) for m in METRICS))
    lines.append("cost (wall seconds per run, this machine):")
    for c in res["costs"]:
        lines.append(f"  overlap {c['overlap']} ({c['windows']} windows) {c['row']}: {c['seconds_mean']:.1f}s "
                     f"over {c['runs']} runs")
    return "\n".join(lines)


def _ints(text: str) -> tuple:
    return tuple(int(v) for v in text.split(",") if v.strip())


def options(argv) -> tuple[Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench.context_windows", description=__doc__.split("\n\n")[0])
    d = Options()
    p.add_argument("--seeds", type=_ints, default=d.seeds)
    p.add_argument("--frames", type=int, default=d.frames, help="latent frames of the reference and the video")
    p.add_argument("--context", type=int, default=d.context, help="latent frames per context window")
    p.add_argument("--overlaps", type=_ints, default=d.overlaps, help="window overlaps to compare, latent frames")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--starts", type=lambda t: tuple(t.split(",")), default=d.starts, help="t2v and/or v2v")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    bad = [o for o in a.overlaps if not d.span <= o < a.context]
    if bad or a.frames <= a.context or set(a.starts) - {"t2v", "v2v"}:
        p.error(f"--overlaps must lie in {d.span}..{a.context - 1} (the temporal span up to the window), "
                "--frames must exceed --context, --starts t2v,v2v")
    return replace(d, seeds=a.seeds, frames=a.frames, context=a.context, overlaps=a.overlaps, steps=a.steps,
                   starts=a.starts), a


def main(argv=None, host=None) -> int:
    opts, args = options(argv)
    if host is None:
        import comfy_host
        host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-windows-"))
        host.require_pack()
    res = {"machine": machine_line("cpu"), "context_windows": run(host, opts)}
    print(format_result(res["context_windows"]))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
