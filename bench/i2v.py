"""Image-to-video quality case: does motion transfer move a given still image's content?

    python -m bench.i2v [--seeds N] [--smoke] [--json PATH] [--strip PNG]

The tiny shapes model of ``bench.quality`` level 2 (``bench/models/tiny_wan_shapes.safetensors``),
through ComfyUI's real executor. For each seed:

* reference: shape A on a random path (``bench.quality.shapes_reference``), loaded with the
  stock ``LoadLatent`` and read by Extract Motion;
* start image: shape B (the other class, also the prompt) drawn as latent frame 0 at the
  reference path's first point, with the reference's radius (``bench.shapes.render`` /
  ``encode``). The start latent is that frame followed by zeros, loaded with ``LoadLatent``;
  the test node ``FastVMTTestFrameMask`` (0 on frame 0) goes through the stock
  ``SetLatentNoiseMask``, and the Guidance Sampler denoises it at denoise 1.0, so ComfyUI's
  inpainting holds frame 0 (re-noised to each step's sigma for the model, the given latent
  in the result) and generates the other frames;
* rows: no transfer (mode No_transfer), FastVMT (defaults, interval 3), no skip (interval 1),
  all with level 2's settings (motion block 2, window 5, tile 2x2, span 3, 20 steps, cfg 4,
  euler/simple). A harder case ("offset start") draws the start image a few latent pixels
  away from the reference's first position, across the reference's direction of travel, so
  the given first frame is not the reference's; no transfer and FastVMT are run on it.

Scores per clip: the paper's motion fidelity against the reference and the centroid path's
step cosine (as ``bench.quality.score_clip``; both compare motion, not position), whether the
classifier sees shape B, the mean centroid distance to the reference path and to that path
moved to the image's position, the first step's error (centroid of frame 1 minus frame 0,
against the reference's first step: does the given content start moving from where it is?),
and the start-frame check: the largest absolute difference between the decoded frame 0 and
the given image's intensities (about 0: the sampler holds it).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import quality, shapes
from bench.amf import machine_line, write_json

ROWS = {  # name -> Step-Skip Settings overrides (as bench.quality.CONFIGS)
    "no transfer": {"mode": "No_transfer"},
    "FastVMT": {},
    "no skip": {"interval": 1},
}
OFFSET_ROWS = ("no transfer", "FastVMT")   # run again with the start image moved off the reference's start
OFFSET_SUFFIX = ", offset start"
OFFSET_PX = 3.0                            # latent pixels (the shapes' radius is 2.6-3.6)
SMOKE_STEPS = 6


# --------------------------------------------------------------------------- inputs

def reference_radius(seed: int, spec: shapes.ClipSpec, ref: dict) -> float:
    """The radius ``shapes_reference(seed)`` drew its shape with (it returns only the path):
    the same generator calls, checked against the returned path."""
    g = torch.Generator().manual_seed(10_000 + seed)
    torch.randint(0, len(shapes.CLASSES), (1,), generator=g)
    torch.randint(0, len(shapes.CLASSES) - 1, (1,), generator=g)
    paths, radii = shapes.random_paths(g, 1, spec)
    if not torch.equal(paths[0], ref["path"]):
        raise RuntimeError("bench.quality.shapes_reference changed how it draws its path; update reference_radius")
    return float(radii[0])


def start_offset(ref: dict, radius: float, spec: shapes.ClipSpec, px: float = OFFSET_PX) -> torch.Tensor:
    """(dx, dy) in latent pixels: ``px`` across the reference's start-to-end direction, to the
    side where the moved path leaves the frame least; the moved start is kept inside the frame."""
    path = ref["path"]
    travel = path[-1] - path[0]
    n = float(travel.norm())
    d = torch.tensor([-travel[1] / n, travel[0] / n]) if n > 1e-6 else torch.tensor([1.0, 0.0])
    lo, hi = radius + 0.5, spec.size - radius - 0.5

    def outside(p):
        return float((lo - p).clamp(min=0).sum() + (p - hi).clamp(min=0).sum())

    side = min((d, -d), key=lambda v: outside(path + px * v))
    start = (path[0] + px * side).clamp(lo, hi)
    return start - path[0]


def start_image(ref: dict, radius: float, spec: shapes.ClipSpec, offset=None) -> torch.Tensor:
    """Shape B drawn at the reference path's first point (plus ``offset``): intensity ``[H, W]``."""
    pos = ref["path"][0] + (torch.zeros(2) if offset is None else offset)
    return shapes.render(torch.tensor([ref["b"]]), pos.view(1, 1, 2), torch.tensor([radius]), spec.size)[0, 0]


def start_latent(image: torch.Tensor, frames: int) -> torch.Tensor:
    """Model-space latent ``[1, 16, F, H, W]``: the image's latent frame, then zeros."""
    lat = torch.zeros(1, shapes.CHANNELS, frames, *image.shape)
    lat[:, :, :1] = shapes.encode(image[None, None])
    return lat


# --------------------------------------------------------------------------- graph

def i2v_graph(model: str, ref: str, start: str, prompt: str, *, spec: shapes.ClipSpec, seed: int,
              overrides: dict, block: int, steps: int, cfg: float) -> dict:
    """Level 2's text-to-video graph (``bench.quality.level2_graph``, denoise 1) with the empty
    latent replaced by the start latent under a first-frame noise mask."""
    g = quality.level2_graph(model, ref, prompt, spec=spec, seed=seed, overrides=overrides, block=block,
                             steps=steps, cfg=cfg, denoise=1.0)
    del g["empty"]
    g["start"] = {"class_type": "LoadLatent", "inputs": {"latent": start}}
    g["mask"] = {"class_type": "FastVMTTestFrameMask",
                 "inputs": {"frames": spec.frames, "height": spec.size, "width": spec.size, "held_frames": 1}}
    g["masked"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["start", 0], "mask": ["mask", 0]}}
    g["sample"]["inputs"]["latent_image"] = ["masked", 0]
    return g


def i2v_clip(host, model: str, ref: dict, ref_name: str, start_name: str, *, spec: shapes.ClipSpec, seed: int,
             **graph_kw) -> tuple[torch.Tensor, dict]:
    """One generated clip's intensity ``[F, H, W]`` and what the sampler reported about guidance."""
    g = i2v_graph(model, ref_name, start_name, shapes.CLASSES[ref["b"]], spec=spec, seed=seed, **graph_kw)
    res = host.run_graph(g).raise_for_error()
    clip = shapes.decode(quality.model_space(res.output("sample", 0)))[0]
    ui = res.ui_output("sample")
    rep = dict((ui.get("fastvmt_report") or [{}])[0])
    text = (ui.get("text") or [""])[0]
    lines = text.splitlines()
    return clip, {"guided_steps": len(rep.get("steps", [])), "n_guided": rep.get("n_guided", 0),
                  "gradient_passes": sum(s.get("gradient_evaluations", 0) for s in rep.get("steps", [])),
                  "summary": lines[0] if lines else "",
                  "image_to_video": next((ln.strip() for ln in lines if "image-to-video" in ln), "")}


def score_i2v(ref: dict, gen: torch.Tensor, image: torch.Tensor, offset: torch.Tensor) -> dict:
    """``bench.quality.score_clip`` plus the start-frame check, the path error against the
    reference path moved to where the image puts the shape, and the first step's error."""
    m = quality.score_clip(ref, gen)
    path = shapes.centroid_path(gen)
    m["shifted_path_err_px"] = float((path - (ref["path"] + offset)).norm(dim=1).mean())
    # Does the given content start moving like the reference from where it is? The first
    # generated step (frame 0 -> 1, centroids) against the reference's first step.
    m["first_step_err_px"] = float(((path[1] - path[0]) - (ref["path"][1] - ref["path"][0])).norm())
    m["frame0_max_diff"] = float((gen[0] - image).abs().max())
    m["centroid_path"] = [[round(float(v), 3) for v in p] for p in path]
    return m


# --------------------------------------------------------------------------- run

def run_i2v(host, seeds: list[int], *, block: int = 2, steps: int = 20, cfg: float = 4.0, rows: dict | None = None,
            offset_rows=OFFSET_ROWS, offset_px: float = OFFSET_PX, strip: Path | None = None, strip_seeds: int = 3,
            keep_clips: bool = False) -> dict:
    model = quality.install_shapes_model(host)
    spec = shapes.ClipSpec()
    rows = ROWS if rows is None else rows
    runs, examples, clips = [], [], {}
    for seed in seeds:
        ref = quality.shapes_reference(seed, spec)
        radius = reference_radius(seed, spec, ref)
        ref_name = quality.put_latent(ref["latent"], f"fastvmt_i2v_ref_{seed}")
        prompt = shapes.CLASSES[ref["b"]]
        starts = [("", torch.zeros(2), rows)]
        if offset_rows:
            starts.append((OFFSET_SUFFIX, start_offset(ref, radius, spec, offset_px),
                           {k: rows.get(k, ROWS.get(k, {})) for k in offset_rows}))
        example = [(f"reference: {shapes.CLASSES[ref['a']]}", ref["intensity"])]
        for suffix, offset, configs in starts:
            image = start_image(ref, radius, spec, offset)
            start_name = quality.put_latent(start_latent(image, spec.frames),
                                            f"fastvmt_i2v_start_{seed}{'_offset' if suffix else ''}")
            shown = torch.zeros(spec.frames, spec.size, spec.size)
            shown[0] = image
            dist = float(offset.norm())
            example.append((f"start: {prompt}" + (f"\n(offset {dist:.1f} px)" if suffix else ""), shown))
            for config, over in configs.items():
                t0 = time.perf_counter()
                gen, guidance = i2v_clip(host, model, ref, ref_name, start_name, spec=spec, seed=seed, block=block,
                                         steps=steps, cfg=cfg, overrides=over)
                seconds = time.perf_counter() - t0
                m = score_i2v(ref, gen, image, offset)
                name = config + suffix
                runs.append({"seed": seed, "config": name, "reference": shapes.CLASSES[ref["a"]], "prompt": prompt,
                             "radius": radius, "offset_px": [float(v) for v in offset], **m, "seconds": seconds,
                             "guidance": guidance})
                if keep_clips:
                    clips[(seed, name)] = {"clip": gen, "image": image}
                if config in ("no transfer", "FastVMT"):
                    example.append((f"{config}{' (offset)' if suffix else ''}\nfidelity {m['fidelity']:.2f}", gen))
        if len(examples) < strip_seeds:
            examples.append(example)
    if strip is not None:
        quality.write_strip(Path(strip), examples)
    out = {"setup": {"model": quality.SHAPES_MODEL.name, "latent": [16, spec.frames, spec.size, spec.size],
                     "motion_block": block, "window": 5, "tile": [2, 2], "temporal_span": 3, "steps": steps,
                     "cfg": cfg, "sampler": "euler/simple", "denoise": 1.0, "seeds": seeds,
                     "start": "shape B (= prompt) as latent frame 0 at the reference path's start, other frames 0; "
                              "FastVMTTestFrameMask (frame 0 held) -> SetLatentNoiseMask",
                     "offset_start_px": offset_px if offset_rows else None,
                     "rows": {k: v for k, v in rows.items()}},
           "runs": runs, "summary": summarise(runs)}
    if keep_clips:
        out["clips"] = clips
    return out


def summarise(runs: list) -> list:
    """Mean +- spread of fidelity per row (``bench.quality._summarise``), with the step cosine,
    shape rate, path errors, first-step error and seconds averaged, the worst frame-0 difference, and the
    seeds where the row beats no transfer (same start) on fidelity."""
    extra = ("shape_ok", "step_cos", "path_err_px", "shifted_path_err_px", "first_step_err_px", "seconds",
             "fidelity_local")
    summary = quality._summarise(runs, ("config",), "fidelity", extra=extra)
    by = {(r["config"], r["seed"]): r for r in runs}
    for item in summary:
        rs = [r for r in runs if r["config"] == item["config"]]
        item["frame0_max_diff"] = max(r["frame0_max_diff"] for r in rs)
        base = item["config"].replace("FastVMT", "no transfer").replace("no skip", "no transfer")
        if base != item["config"]:
            diffs = [r["fidelity"] - by[(base, r["seed"])]["fidelity"] for r in rs if (base, r["seed"]) in by]
            if diffs:
                item["vs_no_transfer"] = {"mean_gain": statistics.fmean(diffs), "wins": sum(d > 0 for d in diffs),
                                          "n": len(diffs)}
    return summary


def format_table(res: dict) -> str:
    out = [f"Machine: {res['machine']}", "",
           f"Image-to-video (tiny trained Wan, moving shapes): {json.dumps(res['i2v']['setup'])}", "",
           "| row | motion fidelity, paper's form (mean +- std) | min | max | beats no transfer | node default | "
           "path step cosine | shape follows prompt | frame 0 max diff | path error px (ref / moved ref) | "
           "first step error px | s per clip | seeds |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["i2v"]["summary"]:
        vs = r.get("vs_no_transfer")
        beat = f"{vs['wins']}/{vs['n']} ({vs['mean_gain']:+.3f})" if vs else "-"
        out.append(f"| {r['config']} | {r['mean']:.3f} +- {r['std']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {beat} | "
                   f"{r['fidelity_local']:.3f} | {r['step_cos']:.3f} | {r['shape_ok']:.0%} | {r['frame0_max_diff']:.1e} | "
                   f"{r['path_err_px']:.2f} / {r['shifted_path_err_px']:.2f} | {r['first_step_err_px']:.2f} | "
                   f"{r['seconds']:.1f} | {r['n']} |")
    return "\n".join(out)


def smoke_settings(offset_px: float = OFFSET_PX) -> dict:
    """``run_i2v`` keywords of ``--smoke``: few steps, no transfer and FastVMT, FastVMT with the offset start."""
    return dict(steps=SMOKE_STEPS, rows={k: ROWS[k] for k in ("no transfer", "FastVMT")},
                offset_rows=("FastVMT",) if offset_px > 0 else ())


def cli(argv=None, host=None) -> dict:
    """The command: parse ``argv``, run, print the table, write the JSON / strip; returns the
    results, with the decoded clips under ``["i2v"]["clips"]`` (not written to the JSON).
    ``host``: a booted ComfyHost (the test session's); default: boot one."""
    p = argparse.ArgumentParser(prog="python -m bench.i2v", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 8; smoke 1)")
    p.add_argument("--smoke", action="store_true",
                   help=f"1 seed, {SMOKE_STEPS} steps, no transfer / FastVMT / FastVMT offset start (the tests)")
    p.add_argument("--block", type=int, default=2, help="motion block")
    p.add_argument("--offset", type=float, default=OFFSET_PX, help="offset start, latent pixels (0: no offset rows)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--strip", help="write a frame strip PNG of the first 3 seeds here")
    args = p.parse_args(argv)
    if host is None:
        import comfy_host
        host = comfy_host.get_host() or comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-i2v-"))
    host.require_pack()
    seeds = list(range(args.seeds or (1 if args.smoke else 8)))
    kw = dict(block=args.block, strip=args.strip, offset_px=args.offset,
              offset_rows=OFFSET_ROWS if args.offset > 0 else ())
    if args.smoke:
        kw.update(smoke_settings(args.offset))
    argv = sys.argv[1:] if argv is None else argv
    res = {"machine": machine_line("cpu"), "command": " ".join(["python -m bench.i2v", *argv]),
           "i2v": run_i2v(host, seeds, keep_clips=True, **kw)}
    print(format_table(res))
    if args.json:
        write_json(args.json, {**res, "i2v": {k: v for k, v in res["i2v"].items() if k != "clips"}})
    if not all(math.isfinite(r["fidelity"]) for r in res["i2v"]["runs"]):
        print("warning: a fidelity score is not finite", file=sys.stderr)
    return res


def main(argv=None) -> int:
    cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
