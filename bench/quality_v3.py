"""Quality level 3: motion transfer on the "shapes v2" model, with the motion known.

    python -m bench.quality --level 3 [--model PATH] [--seeds 16] [--starts t2v,v2v] [--rows ...]
                            [--steps 12] [--json out.json] [--strip out.png] [--sweep motion_block=1,2,3]

The model is the tiny Wan trained by ``python -m bench.train_shapes --preset v2`` (or
``v2-gpu``) on ``bench.shapes_v2`` clips: one or two shapes on their own paths over a
textured background that the camera pans, zooms and turns (latent 16 x 12 x 32 x 32).
Every graph runs in ComfyUI's real executor: LoadLatent (the reference), Extract Motion,
Step-Skip Settings, Guidance Sampler (``bench.quality_common.level2_graph``).

Per seed: a reference clip of class A with a moving camera, and the prompt class B != A.
Two starts: "t2v", text-to-video from an empty latent (denoise 1), and "v2v", from the
reference noised to denoise 0.75 (the released code's example; ``--v2v-denoise``).
Rows: no transfer, FastVMT, no skip (interval 1), full AMF (global flow, interval 1,
whole DiT).

Scores of each generated clip (decoded with the toy codec) against the reference:
- motion fidelity in the paper's form and in the Motion Fidelity node's default form
  (``fastvmt_core.fidelity``, KLT tracks on frames upsampled ``--frame-scale`` times);
- model-free, against the reference's ground truth (``bench.known_motion``): the camera
  (a similarity fitted to block matching, cosine and endpoint error of the step motion
  against the known camera) and the shapes (k-means tracks of the bright pixels, step
  cosine against the known paths).
Each row gets mean and spread over seeds and a paired per-seed difference against no
transfer (same seed, same start): mean, spread and how many seeds are above zero. The
same estimators run on the references themselves ("estimator check") show their ceiling.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench import known_motion, shapes, shapes_v2
from bench import quality_common as q
from bench.amf import machine_line, write_json
from fastvmt_core import FastVMTSettings
from fastvmt_core.fidelity import PAPER_FORM, motion_fidelity_report
from fastvmt_core.settings import STEP_SKIP_FIELDS

V2_MODEL = q.REPO / "bench" / "models" / "tiny_wan_shapes_v2.safetensors"
STARTS = ("t2v", "v2v")
METRICS = ("fidelity", "fidelity_local", "camera_cos", "camera_epe_px", "shape_cos", "shape_step_epe_px")
EXTRACTION_KNOBS = {"motion_block": "block", "window": "window", "temporal_span": "span"}
REFERENCE_SPEC = shapes_v2.ClipSpecV2(camera_p=1.0)   # every reference moves its camera
SMOKE_SPEC = shapes_v2.ClipSpecV2(frames=5, camera_p=1.0)
TARGET_GAIN, TARGET_SHARE, TARGET_RATIO = 0.15, 0.75, 0.9


@dataclass(frozen=True)
class Level3Options:
    model: Path = V2_MODEL
    seeds: tuple = tuple(range(16))
    starts: tuple = ("t2v", "v2v")
    rows: tuple = tuple(q.CONFIGS)
    steps: int = 12                 # level 2 used 20: 1.8x the CPU time, too slow for 16 seeds on 2 cores
    cfg: float = 4.0
    block: int | None = None        # None: the middle block of the model (num_layers // 2)
    window: int = 9
    span: int = 3
    frame_scale: int = 4            # 32 px latent frames -> 128 px for the KLT tracker
    spec: shapes_v2.ClipSpecV2 = REFERENCE_SPEC
    sweep: tuple = ()               # ((knob, (values...)), ...)
    strip_seeds: int = 3
    v2v_denoise: float = 0.75       # the released code's example

    def denoise(self, start: str) -> float:
        return 1.0 if start == "t2v" else self.v2v_denoise


# --------------------------------------------------------------------------- references and scores

def reference(seed: int, spec: shapes_v2.ClipSpecV2) -> dict:
    """One v2 clip of class A with its ground truth, and a prompt class B != A, from ``seed``."""
    clip = shapes_v2.sample(torch.Generator().manual_seed(30_000 + seed), 1, spec)
    a = int(clip.classes[0])
    g = torch.Generator().manual_seed(40_000 + seed)
    b = (a + 1 + int(torch.randint(0, len(shapes.CLASSES) - 1, (1,), generator=g))) % len(shapes.CLASSES)
    return {"a": a, "b": b, "intensity": clip.intensity[0], "latent": clip.latent, "camera": clip.camera[0],
            "paths": clip.paths[0], "radii": clip.radii[0], "present": clip.present[0]}


def score(ref: dict, gen: torch.Tensor, frame_scale: int) -> dict:
    """Both forms of motion fidelity against the reference clip, and the model-free scores
    against the reference's known camera and shape paths."""
    ref_frames, gen_frames = shapes.to_frames(ref["intensity"], frame_scale), shapes.to_frames(gen, frame_scale)
    paper = motion_fidelity_report(ref_frames, gen_frames, **PAPER_FORM)
    local = motion_fidelity_report(ref_frames, gen_frames)
    return {"fidelity": paper.score, "fidelity_local": local.score, **known_scores(ref, gen)}


def known_scores(ref: dict, gen: torch.Tensor) -> dict:
    clip = gen.float().numpy()
    return {**known_motion.camera_score(clip, ref["camera"].numpy()),
            **known_motion.shape_score(clip, ref["paths"].numpy(), ref["radii"].numpy(), ref["present"].numpy())}


# --------------------------------------------------------------------------- runs

def model_blocks(path: Path) -> int:
    """Number of DiT blocks in a Wan checkpoint (from its key names)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return 1 + max(int(k.split(".")[1]) for k in f.keys() if k.startswith("blocks."))


def generate(host, model: str, ref: dict, ref_name: str, start: str, seed: int, opts: Level3Options,
             overrides: dict) -> torch.Tensor:
    """One clip (intensity ``[F, H, W]``) for the reference's prompt class. ``overrides``:
    Step-Skip Settings inputs, plus the extraction knobs of ``EXTRACTION_KNOBS``."""
    extraction = {EXTRACTION_KNOBS[k]: overrides[k] for k in EXTRACTION_KNOBS if k in overrides}
    settings = {k: v for k, v in overrides.items() if k not in EXTRACTION_KNOBS}
    graph_kw = {"block": opts.block, "window": opts.window, "span": opts.span, **extraction}
    g = q.level2_graph(model, ref_name, shapes.CLASSES[ref["b"]], spec=opts.spec, seed=seed, overrides=settings,
                       steps=opts.steps, cfg=opts.cfg, denoise=opts.denoise(start), **graph_kw)
    return shapes.decode(q.model_space(host.run_graph(g).raise_for_error().output("sample", 0)))[0]


def run_clip(host, model, case, start, opts, overrides, tags: dict) -> tuple[dict, torch.Tensor]:
    seed, ref, name = case
    t0, c0 = time.perf_counter(), time.process_time()
    gen = generate(host, model, ref, name, start, seed, opts, overrides)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0   # cpu: all threads; wall on a busy machine
    return {**tags, "start": start, "seed": seed, "reference": shapes.CLASSES[ref["a"]],
            "prompt": shapes.CLASSES[ref["b"]], **score(ref, gen, opts.frame_scale), "seconds": seconds,
            "cpu_seconds": cpu}, gen


def run_level3(host, opts: Level3Options, strip: Path | None = None) -> dict:
    """Every row for every start and seed (and the sweep, if asked); summaries and verdicts."""
    model = q.install_shapes_model(host, opts.model)
    if opts.block is None:
        opts = replace(opts, block=model_blocks(opts.model) // 2)
    cases = []
    for seed in opts.seeds:
        ref = reference(seed, opts.spec)
        cases.append((seed, ref, q.put_latent(ref["latent"], f"fastvmt_l3_{seed}")))
    runs, examples = [], {}
    for start in opts.starts:
        for case in cases:
            for row in opts.rows:
                rec, gen = run_clip(host, model, case, start, opts, q.CONFIGS[row], {"row": row})
                runs.append(rec)
                examples.setdefault((start, case[0]), []).append((row, rec, gen))
    out = {"setup": setup(opts), "runs": runs,
           "reference_check": [{"seed": s, **known_scores(ref, ref["intensity"])} for s, ref, _ in cases]}
    if opts.sweep:   # first: it adds the no-transfer runs its differences need if the rows left them out
        out["sweep"] = run_sweep(host, model, cases, opts, runs)
        out["sweep_summary"] = summarise(out["sweep"], ("knob", "value", "start"), runs)
    out["summary"] = summarise(runs, ("start", "row"), runs)
    out["verdicts"] = verdicts(out["summary"])
    if strip is not None:
        write_strip(Path(strip), cases, examples, opts)
    return out


def run_sweep(host, model, cases, opts: Level3Options, runs: list) -> list:
    """FastVMT with one knob changed at a time, every seed and start. The no-transfer
    baseline of the paired differences is run here if the main rows left it out."""
    have = {(r["start"], r["seed"]) for r in runs if r["row"] == "no transfer"}
    for start in opts.starts:
        for case in cases:
            if (start, case[0]) not in have:
                runs.append(run_clip(host, model, case, start, opts, q.CONFIGS["no transfer"],
                                     {"row": "no transfer"})[0])
    out = []
    for knob, values in opts.sweep:
        for value in values:
            over = {knob: value, **({"lr_end": value * 2 / 3} if knob == "lr_start" else {})}
            for start in opts.starts:
                for case in cases:
                    out.append(run_clip(host, model, case, start, opts, over, {"knob": knob, "value": value})[0])
    return out


def setup(opts: Level3Options) -> dict:
    d = FastVMTSettings()
    return {"model": opts.model.name, "latent": [16, opts.spec.frames, opts.spec.size, opts.spec.size],
            "motion_block": opts.block, "window": opts.window, "tile": [2, 2], "temporal_span": opts.span,
            "steps": opts.steps, "cfg": opts.cfg, "sampler": "euler/simple",
            "denoise": {s: opts.denoise(s) for s in opts.starts},
            "seeds": list(opts.seeds), "frame_scale": opts.frame_scale, "reference_camera_p": opts.spec.camera_p,
            "guidance": {k: getattr(d, k) for k in ("lr_start", "lr_end", "inner_steps", "guided_fraction",
                                                    "reference_noise", "reference_sigma_cap")}}


# --------------------------------------------------------------------------- summaries

def paired(values: dict, base: dict) -> dict:
    """Per-seed differences ``values[seed] - base[seed]`` over the seeds both have."""
    diffs = [values[s] - base[s] for s in sorted(values) if s in base]
    if not diffs:
        return {"mean": math.nan, "std": math.nan, "positive": 0, "n": 0}
    return {"mean": statistics.fmean(diffs), "std": statistics.pstdev(diffs),
            "positive": sum(d > 0 for d in diffs), "n": len(diffs)}


def summarise(rows: list, keys: tuple, runs: list) -> list:
    """Mean and spread of every metric per group, and the paired difference against the
    no-transfer run of the same start and seed (taken from ``runs``)."""
    base = {}
    for r in runs:
        if r["row"] == "no transfer":
            base.setdefault(r["start"], {})[r["seed"]] = r
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        item = {**dict(zip(keys, key)), "n": len(rs), "seconds": statistics.fmean(r["seconds"] for r in rs),
                "cpu_seconds": statistics.fmean(r["cpu_seconds"] for r in rs)}
        start_base = base.get(rs[0]["start"], {})
        for m in METRICS:
            vals = [r[m] for r in rs]
            item[m] = {"mean": statistics.fmean(vals), "std": statistics.pstdev(vals),
                       "vs_no_transfer": paired({r["seed"]: r[m] for r in rs},
                                                {s: b[m] for s, b in start_base.items()})}
        out.append(item)
    return out


def verdicts(summary: list) -> dict:
    """The issue's targets, each with its figures and whether it is met."""
    by = {(r["start"], r["row"]): r["fidelity"] for r in summary}
    out = {}
    if ("t2v", "FastVMT") in by and ("t2v", "no transfer") in by:
        d = by[("t2v", "FastVMT")]["vs_no_transfer"]
        need = math.ceil(TARGET_SHARE * d["n"])
        out["t2v FastVMT >= no transfer + 0.15, paired difference > 0 on 3/4 of seeds"] = {
            "gain": d["mean"], "positive": d["positive"], "n": d["n"], "needed_positive": need,
            "met": bool(d["mean"] >= TARGET_GAIN and d["positive"] >= need)}
    for start in STARTS:
        if (start, "FastVMT") in by and (start, "full AMF") in by:
            fast, full = by[(start, "FastVMT")]["mean"], by[(start, "full AMF")]["mean"]
            # undefined (None) when full AMF itself transfers nothing
            ratio = fast / full if full > 0 else math.nan
            out[f"{start} FastVMT >= 0.9x full AMF"] = {"FastVMT": fast, "full AMF": full, "ratio": ratio,
                                                         "met": bool(ratio >= TARGET_RATIO) if full > 0 else None}
    return out


# --------------------------------------------------------------------------- output

def _cell(m: dict, digits: int = 3) -> str:
    return f"{m['mean']:.{digits}f} +- {m['std']:.{digits}f}"


def _diff(m: dict) -> str:
    d = m["vs_no_transfer"]
    return f"{d['mean']:+.3f} +- {d['std']:.3f} ({d['positive']}/{d['n']})" if d["n"] else "-"


def format_level3(res: dict) -> str:
    """The Markdown tables: rows x starts, the estimator check, the verdicts and the sweep."""
    head = ("| {0} | motion fidelity, paper's form | vs no transfer (seeds > 0) | node default form | "
            "vs no transfer | camera cos | camera EPE px | shape step cos | vs no transfer | s/clip (CPU s) |")
    rule = "|---|---|---|---|---|---|---|---|---|---|"

    def line(label, r):
        return (f"| {label} | {_cell(r['fidelity'])} | {_diff(r['fidelity'])} | {_cell(r['fidelity_local'])} | "
                f"{_diff(r['fidelity_local'])} | {_cell(r['camera_cos'])} | {_cell(r['camera_epe_px'], 2)} | "
                f"{_cell(r['shape_cos'])} | {_diff(r['shape_cos'])} | {r['seconds']:.1f} ({r['cpu_seconds']:.1f}) |")
    out = [f"Level 3 (shapes v2 model, camera and shape motion known): {res['setup']}", "",
           head.format("start, row"), rule]
    out += [line(f"{r['start']}, {r['row']}", r) for r in res["summary"]]
    check = res["reference_check"]
    out += ["", "Estimator check (the model-free scores of each reference against its own ground truth): "
            f"camera cos {statistics.fmean(c['camera_cos'] for c in check):.3f}, camera EPE "
            f"{statistics.fmean(c['camera_epe_px'] for c in check):.2f} px, shape step cos "
            f"{statistics.fmean(c['shape_cos'] for c in check):.3f}.", "", "Targets:"]
    for name, v in res["verdicts"].items():
        figures = ", ".join(f"{k} {x:.3f}" if isinstance(x, float) else f"{k} {x}" for k, x in v.items() if k != "met")
        verdict = "n/a" if v["met"] is None else "met" if v["met"] else "MISSED"
        out.append(f"- {name}: {verdict} ({figures})")
    if "sweep_summary" in res:
        out += ["", "Sweep (FastVMT, one knob changed at a time):", "", head.format("knob = value, start"), rule]
        out += [line(f"{r['knob']} = {r['value']}, {r['start']}", r) for r in res["sweep_summary"]]
    return "\n".join(out)


def write_strip(path: Path, cases: list, examples: dict, opts: Level3Options) -> None:
    """Frame strip of the first seeds (the first start): reference | no transfer | FastVMT."""
    start, blocks = opts.starts[0], []
    for seed, ref, _ in cases[:opts.strip_seeds]:
        rows = [(f"reference: {shapes.CLASSES[ref['a']]}\nseed {seed}", ref["intensity"])]
        for row, rec, gen in examples.get((start, seed), []):
            if row in ("no transfer", "FastVMT"):
                rows.append((f"{start} {row}: {rec['prompt']}\nfidelity {rec['fidelity']:.2f}\n"
                             f"camera {rec['camera_cos']:.2f} shape {rec['shape_cos']:.2f}", gen))
        blocks.append(rows)
    q.write_strip(path, blocks, scale=3)


def parse_sweep(items: list) -> tuple:
    """``knob=v1,v2`` -> (knob, (values...)) typed like the setting; a clear error otherwise."""
    d, out = FastVMTSettings(), []
    for item in items or ():
        knob, _, values = item.partition("=")
        if knob not in STEP_SKIP_FIELDS + tuple(EXTRACTION_KNOBS) or not values:
            raise SystemExit(f"--sweep {item!r}: use KNOB=V1,V2 with KNOB one of "
                             f"{', '.join(tuple(EXTRACTION_KNOBS) + STEP_SKIP_FIELDS)}")
        kind = type(getattr(d, knob))
        try:
            out.append((knob, tuple(kind(v) for v in values.split(","))))
        except ValueError:
            raise SystemExit(f"--sweep {item!r}: {knob} takes {kind.__name__} values") from None
    return tuple(out)


def options(argv) -> tuple[Level3Options, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench.quality --level 3", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=V2_MODEL, help="the shapes v2 checkpoint (default %(default)s)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 16; smoke 1)")
    p.add_argument("--starts", default="t2v,v2v", help="comma list of: t2v (denoise 1), v2v (denoise 0.75)")
    p.add_argument("--rows", default=",".join(q.CONFIGS), help="comma list of: " + ", ".join(q.CONFIGS))
    p.add_argument("--v2v-denoise", type=float, default=0.75, help="denoise of the v2v start (default 0.75)")
    p.add_argument("--steps", type=int, default=None,
                   help="euler steps (default 12, to fit a 2-core CPU; level 2 used 20; smoke 4)")
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--block", type=int, default=None, help="motion block (default: the model's middle block)")
    p.add_argument("--window", type=int, default=9)
    p.add_argument("--span", type=int, default=3)
    p.add_argument("--sweep", action="append", metavar="KNOB=V1,V2",
                   help="also run FastVMT with one knob changed, e.g. motion_block=1,2,3, reference_sigma_cap="
                        "0.7,0.9 or lr_start=0.001,0.01 (lr_end follows at 2/3); repeatable")
    p.add_argument("--smoke", action="store_true", help="one seed, 4 steps, 5 latent frames (the test runs it)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--strip", help="write a frame strip PNG (reference | no transfer | FastVMT) here")
    args = p.parse_args(argv)
    starts, rows = _choices("--starts", args.starts, STARTS), _choices("--rows", args.rows, q.CONFIGS)
    if not args.model.is_file():
        raise SystemExit(f"--model {args.model}: no such file; train one with `python -m bench.train_shapes "
                         "--preset v2 --out bench/models/tiny_wan_shapes_v2.safetensors`")
    sweep, blocks = parse_sweep(args.sweep), model_blocks(args.model)
    for b in [args.block if args.block is not None else 0] + [v for k, vs in sweep if k == "motion_block" for v in vs]:
        if not 0 <= b < blocks:
            raise SystemExit(f"motion block {b}: {args.model.name} has blocks 0..{blocks - 1}")
    if not 0 < args.v2v_denoise < 1:
        raise SystemExit(f"--v2v-denoise {args.v2v_denoise}: use a value between 0 and 1 (1 is the t2v start)")
    steps = args.steps or (4 if args.smoke else Level3Options.steps)
    opts = Level3Options(model=args.model, seeds=tuple(range(args.seeds or (1 if args.smoke else 16))),
                         starts=starts, rows=rows, steps=steps, cfg=args.cfg,
                         block=args.block, window=args.window, span=args.span, sweep=sweep,
                         spec=SMOKE_SPEC if args.smoke else REFERENCE_SPEC, v2v_denoise=args.v2v_denoise)
    return opts, args


def _choices(flag: str, text: str, allowed) -> tuple:
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise SystemExit(f"{flag} {text!r}: use a comma list of {', '.join(allowed)}")
    return items


def main(argv=None, host=None) -> int:
    opts, args = options(argv)
    if host is None:
        import comfy_host
        host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-quality3-"))
        host.require_pack()
    res = {"machine": machine_line("cpu"), "level3": run_level3(host, opts, strip=args.strip)}
    print(format_level3(res["level3"]))
    if args.json:
        write_json(args.json, res)
    return 0
