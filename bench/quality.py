"""Quality benchmark without downloaded weights: does the motion transfer?

    python -m bench.quality [--level 1|2|all] [--quick] [--seeds N] [--json bench_out/quality.json]
    python -m bench.quality --level 3 [...]     (bench/quality_v3.py: the shapes v2 model)

Both levels run through the real ComfyUI node path (ComfyUI found like the tests),
with the reference latent handed to the graph by ComfyUI's stock ``LoadLatent``.

Level 1, guidance mechanics (random-weight Wan, 8 blocks, dim 256, motion block 1).
Reference latents with known motion: a smooth random texture that translates, zooms,
or splits into two halves moving apart. The start latent is the reference's first
frame held still, noised to sigma 0.5 (stock ModelSamplingSD3 shift 1, KSamplerAdvanced
steps 10-13 of 20, all four guided through Apply FastVMT Motion); the returned latent is
the optimised one. Its motion is estimated without the model, by block matching on the
latent's 16 channels (``bench.motion_estimate.block_motion``), and compared with the
same estimate on the reference (``displacement_agreement``: mean cosine, 1 = same
motion, about 0 = unrelated or still). Two models: plain random weights, and the same
with the motion block's key projection tied to its query projection (``level1_model``).
A random model has no denoiser that could amplify a small latent change, so the change
must show in the latent itself: lr 0.03 (10x the paper's) and a clean reference.

Level 2, end to end (the tiny Wan-architecture model trained on moving shapes by
``bench.train_shapes``, committed under ``bench/models``). Reference = shape A on a
random path; prompt = shape B. The generated latent is decoded with the toy codec of
``bench.shapes`` and its motion is scored against the reference with the paper's metric
(``fastvmt_core.fidelity.motion_fidelity``) on 128x128 frames; the centroid path's
step-to-step cosine is a second, simpler motion score, and a fill-ratio classifier says
which shape was drawn. Rows: no transfer, FastVMT (interval 3), no skip (interval 1),
full AMF (global flow, interval 1, full forward); mean and spread over seeds. The main
table starts from the reference noised to denoise 0.75 (the released code's example);
a second table is text-to-video from an empty latent (denoise 1). A sweep changes one
knob at a time (motion block, interval, reference noise, learning rate).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import shapes
from bench.textures import LEVEL1_MOTIONS, known_motion_latent  # noqa: F401  (level 1's references)
from bench.sampling import settings_inputs
from bench.amf import machine_line, write_json
from bench.motion_estimate import block_motion, displacement_agreement
# shared with level 3 (bench.quality_v3); the benchmarks built on this module reach them here too
from bench.quality_common import (CONFIGS, SHAPES_MODEL, conditioning_node, install_shapes_model, level2_graph,
                                  model_space, motion_node, put_latent, write_strip)
from fastvmt_core.fidelity import PAPER_FORM, motion_fidelity_report

# --------------------------------------------------------------------------- level 1

def level1_graph(model: str, ref: str, start: str, *, frames: int, lat_h: int, lat_w: int, seed: int,
                 overrides: dict, steps: int = 20, first_step: int = 10, guided_steps: int = 4, block: int = 1,
                 lr: float = 0.03, add_noise: bool = False) -> dict:
    return {
        "model": {"class_type": "UNETLoader", "inputs": {"unet_name": model, "weight_dtype": "default"}},
        "ref": {"class_type": "LoadLatent", "inputs": {"latent": ref}},
        "pos": conditioning_node("a textured surface"),
        "neg": conditioning_node("", 0.0),
        "motion": motion_node("ref", frames, lat_h, lat_w, block, span=3, window=7, tile=(2, 2)),
        "settings": {"class_type": "FastVMTStepSkipSettings", "inputs": settings_inputs(
            guided_fraction=1.0, lr_start=lr, lr_end=lr * 2 / 3, reference_noise="clean", **overrides)},
        "linear": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["model", 0], "shift": 1.0}},
        "patched": {"class_type": "FastVMTApplyMotion",
                    "inputs": {"model": ["linear", 0], "motion": ["motion", 0], "settings": ["settings", 0]}},
        "start": {"class_type": "LoadLatent", "inputs": {"latent": start}},
        "sample": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["patched", 0], "add_noise": "enable" if add_noise else "disable", "noise_seed": seed,
            "steps": steps, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
            "latent_image": ["start", 0], "start_at_step": first_step, "end_at_step": first_step + guided_steps,
            "return_with_leftover_noise": "enable"}},
        "out": {"class_type": "FastVMTTestInspect", "inputs": {"value": ["sample", 0]}},
    }


LEVEL1_MODELS = {
    "random": "random Wan 2.1 layout, 8 blocks, dim 256",
    "random, tied q/k": "the same with the motion block's key projection set equal to its query projection",
}


def level1_model(host, kind: str, block: int = 1) -> str:
    """Write the level-1 model (once) into ComfyUI's diffusion_models folder; returns its name.
    "random, tied q/k": W_k = W_q in the motion block, so its attention scores how alike two
    tokens are (the correspondence a trained DiT's motion block learns); a plain random
    bilinear form q.k has no such meaning."""
    from safetensors.torch import save_file
    import comfy_host
    if kind == "random":
        return host.tiny_wan(dim=256, num_layers=8, ffn_dim=512)
    name = f"fastvmt_l1_tied_qk_b{block}.safetensors"
    path = host.model_dir("diffusion_models") / name
    if not path.exists():
        sd = comfy_host.tiny_wan_state_dict(dim=256, num_layers=8, ffn_dim=512)
        pre = f"blocks.{block}.self_attn."
        for leaf in ("weight", "bias"):
            sd[pre + "k." + leaf] = sd[pre + "q." + leaf].clone()
        sd[pre + "norm_k.weight"] = sd[pre + "norm_q.weight"].clone()
        save_file(sd, str(path))
    return name


LEVEL1_LATENT = (5, 16, 24)   # frames, height, width
LEVEL1_CELLS = (2, 3)


def level1_case(kind: str, seed: int) -> dict:
    """One level-1 reference: its LoadLatent names (moving and held still) and its motion estimate."""
    ref = known_motion_latent(kind, *LEVEL1_LATENT, seed=100 + seed)
    return {"ref": put_latent(ref, f"fastvmt_l1_{kind}_{seed}"),
            "start": put_latent(ref[:, :, :1].expand_as(ref).contiguous(), f"fastvmt_l1_{kind}_{seed}_still"),
            "field": block_motion(ref[0].transpose(0, 1).numpy(), LEVEL1_CELLS, max_shift=4)}


def level1_agreement(host, model: str, case: dict, seed: int, config: str, lr: float = 0.03) -> float:
    """Run the guided steps of one configuration; agreement of the latent's motion with the reference's."""
    frames, lat_h, lat_w = LEVEL1_LATENT
    res = host.run_graph(level1_graph(model, case["ref"], case["start"], frames=frames, lat_h=lat_h, lat_w=lat_w,
                                      seed=seed, overrides=CONFIGS[config], lr=lr,
                                      add_noise=True)).raise_for_error()
    z = model_space(res.output("sample", 0))[0]
    field = block_motion(z.transpose(0, 1).numpy(), LEVEL1_CELLS, max_shift=4)
    return displacement_agreement(field, case["field"], still_px=0.1)


def run_level1(host, seeds: list[int], quick: bool, lr: float = 0.03, smoke: bool = False) -> dict:
    frames, lat_h, lat_w = LEVEL1_LATENT
    rows = []
    for model_kind in (list(LEVEL1_MODELS)[-1:] if smoke else LEVEL1_MODELS):
        model = level1_model(host, model_kind)
        for kind in (("translation",) if smoke else ("translation", "apart") if quick else LEVEL1_MOTIONS):
            for seed in seeds:
                case = level1_case(kind, seed)
                for config in ("no transfer", "FastVMT", "full AMF"):
                    t0 = time.perf_counter()
                    rows.append({"model": model_kind, "motion": kind, "seed": seed, "config": config,
                                 "agreement": level1_agreement(host, model, case, seed, config, lr),
                                 "seconds": time.perf_counter() - t0})
    return {"setup": {"models": LEVEL1_MODELS, "latent": [16, frames, lat_h, lat_w], "motion_block": 1,
                      "window": 7, "tile": [2, 2], "temporal_span": 3,
                      "start": "the reference's first frame held still, noised to sigma 0.5 (linear schedule)",
                      "steps": "20 (shift 1), steps 10-13 guided", "inner_steps": 10, "lr": [lr, lr * 2 / 3],
                      "reference_noise": "clean", "cells": list(LEVEL1_CELLS), "seeds": seeds},
            "runs": rows, "summary": _summarise(rows, ("model", "motion", "config"), "agreement")}


# --------------------------------------------------------------------------- level 2

def shapes_reference(seed: int, spec: shapes.ClipSpec) -> dict:
    """Shape A on a random path, and a prompt shape B != A, from ``seed``."""
    g = torch.Generator().manual_seed(10_000 + seed)
    a = int(torch.randint(0, len(shapes.CLASSES), (1,), generator=g))
    b = (a + 1 + int(torch.randint(0, len(shapes.CLASSES) - 1, (1,), generator=g))) % len(shapes.CLASSES)
    paths, radii = shapes.random_paths(g, 1, spec)
    clip = shapes.render(torch.tensor([a]), paths, radii, spec.size)
    return {"a": a, "b": b, "path": paths[0], "intensity": clip[0], "latent": shapes.encode(clip)}


def level2_clip(host, model: str, ref: dict, ref_name: str, *, spec: shapes.ClipSpec, seed: int, **graph_kw):
    """Generate one clip for the reference's prompt shape; its intensity ``[F, H, W]``."""
    g = level2_graph(model, ref_name, shapes.CLASSES[ref["b"]], spec=spec, seed=seed, **graph_kw)
    return shapes.decode(model_space(host.run_graph(g).raise_for_error().output("sample", 0)))[0]


def score_clip(ref: dict, gen: torch.Tensor) -> dict:
    # "fidelity": the paper's form of the score (the figures in docs/quality.md are in it);
    # "fidelity_local": the Motion Fidelity node's default (docs/motion_fidelity.md).
    ref_frames, gen_frames = shapes.to_frames(ref["intensity"]), shapes.to_frames(gen)
    rep = motion_fidelity_report(ref_frames, gen_frames, **PAPER_FORM)
    local = motion_fidelity_report(ref_frames, gen_frames)
    cls, fill = shapes.classify(gen)
    path = shapes.centroid_path(gen)
    ref_path = ref["path"]
    return {"fidelity": rep.score, "fidelity_local": local.score, "global_epe_px": rep.global_motion_epe,
            "shape": cls, "fill": fill,
            "shape_ok": cls == shapes.CLASSES[ref["b"]],
            "path_err_px": float((path - ref_path).norm(dim=1).mean()),   # latent pixels
            "step_cos": displacement_agreement(np.diff(path.numpy(), axis=0), np.diff(ref_path.numpy(), axis=0),
                                               still_px=0.1)}


def run_level2(host, seeds: list[int], quick: bool, model_path: Path = SHAPES_MODEL, block: int = 2,
               steps: int = 20, cfg: float = 4.0, sweep: bool = True, overrides: dict | None = None,
               denoise: float = 1.0, strip: Path | None = None, strip_seeds: int = 3) -> dict:
    model = install_shapes_model(host, model_path)
    spec = shapes.ClipSpec()
    overrides = overrides or {}
    rows, examples = [], []
    refs = []
    for seed in seeds:
        ref = shapes_reference(seed, spec)
        refs.append((seed, ref, put_latent(ref["latent"], f"fastvmt_l2_{seed}")))
    common = dict(spec=spec, steps=steps, cfg=cfg, denoise=denoise)
    # the released flow has no global flow (mode AMF): that row is left out for it
    configs = {c: o for c, o in CONFIGS.items()
               if not (overrides.get("flow_definition") == "released" and o.get("mode") == "AMF")}
    for seed, ref, name in refs:
        prompt = shapes.CLASSES[ref["b"]]
        example = [(f"reference: {shapes.CLASSES[ref['a']]}", ref["intensity"])]
        for config, cfg_over in configs.items():
            t0 = time.perf_counter()
            gen = level2_clip(host, model, ref, name, seed=seed, block=block, overrides={**overrides, **cfg_over},
                              **common)
            m = score_clip(ref, gen)
            rows.append({"seed": seed, "config": config, "reference": shapes.CLASSES[ref["a"]], "prompt": prompt,
                         **m, "seconds": time.perf_counter() - t0})
            if config in ("no transfer", "FastVMT"):
                example.append((f"{config}: {prompt}\nfidelity {m['fidelity']:.2f}", gen))
        if len(examples) < strip_seeds:
            examples.append(example)
    if strip is not None:
        write_strip(Path(strip), examples)
    out = {"setup": {"model": model_path.name, "latent": [16, spec.frames, spec.size, spec.size],
                     "motion_block": block, "window": 5, "tile": [2, 2], "temporal_span": 3, "steps": steps,
                     "cfg": cfg, "sampler": "euler/simple", "denoise": denoise, "seeds": seeds, **overrides},
           "runs": rows, "summary": _summarise(rows, ("config",), "fidelity", extra=("shape_ok", "step_cos", "fidelity_local"))}
    if sweep:
        sw = []
        knobs = (("motion_block", range(6)), ("interval", (1, 2, 3, 4)), ("reference_noise", ("renoise", "clean")),
                 ("lr_start", (0.003, 0.03)))
        for knob, values in knobs:
            for v in (values if not quick else list(values)[:2]):
                b = v if knob == "motion_block" else block
                over = dict(overrides)
                if knob != "motion_block":
                    over[knob] = v
                if knob == "lr_start":
                    over["lr_end"] = v * 2 / 3
                for seed, ref, name in refs:
                    gen = level2_clip(host, model, ref, name, seed=seed, block=b, overrides=over, **common)
                    sw.append({"knob": knob, "value": v, "seed": seed, **score_clip(ref, gen)})
        out["sweep"] = sw
        out["sweep_summary"] = _summarise(sw, ("knob", "value"), "fidelity",
                                         extra=("shape_ok", "step_cos", "fidelity_local"))
    return out


# --------------------------------------------------------------------------- tables

def _summarise(rows: list, keys: tuple, metric: str, extra: tuple = ()) -> list:
    groups: dict = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        vals = [r[metric] for r in rs]
        item = dict(zip(keys, key))
        item.update({"mean": statistics.fmean(vals), "std": statistics.pstdev(vals), "min": min(vals),
                     "max": max(vals), "n": len(vals)})
        for e in extra:
            item[e] = statistics.fmean(float(r[e]) for r in rs)
        out.append(item)
    return out


def format_tables(res: dict) -> str:
    out = [f"Machine: {res['machine']}"]
    if "level1" in res:
        l1 = res["level1"]
        out += ["", f"Level 1 (guidance mechanics): {json.dumps(l1['setup'])}", "",
                "| model | motion | configuration | latent motion agreement (mean +- std) | min | max | seeds |",
                "|---|---|---|---|---|---|---|"]
        for r in l1["summary"]:
            out.append(f"| {r['model']} | {r['motion']} | {r['config']} | {r['mean']:.3f} +- {r['std']:.3f} | {r['min']:.3f} | "
                       f"{r['max']:.3f} | {r['n']} |")
    for key, title in (("level2", "Level 2 (tiny trained Wan, moving shapes)"),
                       ("level2_t2v", "Level 2, text-to-video from an empty latent")):
        if key not in res:
            continue
        l2 = res[key]
        out += ["", f"{title}: {json.dumps(l2['setup'])}", "",
                "| configuration | motion fidelity, paper's form (mean +- std) | min | max | "
                "motion fidelity, node default | path step cosine | shape follows prompt | seeds |",
                "|---|---|---|---|---|---|---|---|"]
        for r in l2["summary"]:
            out.append(f"| {r['config']} | {r['mean']:.3f} +- {r['std']:.3f} | {r['min']:.3f} | {r['max']:.3f} | "
                       f"{r['fidelity_local']:.3f} | {r['step_cos']:.3f} | {r['shape_ok']:.0%} | {r['n']} |")
        if "sweep_summary" in l2:
            out += ["", "Sweep (FastVMT, one knob changed at a time):", "",
                    "| knob | value | motion fidelity, paper's form (mean +- std) | node default | "
                    "path step cosine | shape follows prompt |", "|---|---|---|---|---|---|"]
            for r in l2["sweep_summary"]:
                out.append(f"| {r['knob']} | {r['value']} | {r['mean']:.3f} +- {r['std']:.3f} | "
                           f"{r['fidelity_local']:.3f} | {r['step_cos']:.3f} | {r['shape_ok']:.0%} |")
    return "\n".join(out)


def main(argv=None, host=None) -> int:
    # level 3 (bench.quality_v3) has its own options
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--level")
    pre.add_argument("--check-model")
    known, rest = pre.parse_known_args(argv)
    if known.check_model is not None:
        from bench import check_model
        return check_model.main(["--check-model", known.check_model] + rest, host=host)
    if known.level == "3":
        from bench import quality_v3
        return quality_v3.main(rest, host=host)
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", choices=["1", "2", "3", "all"], default="all",
                   help="3: the shapes v2 model with known camera and shape motion (bench.quality_v3; "
                        "`--level 3 --help` lists its options); all = 1 and 2")
    p.add_argument("--quick", action="store_true", help="fewer motions, seeds and sweep points")
    p.add_argument("--smoke", action="store_true", help="the smallest run of both levels (the test suite runs it)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per row (default 3, quick 2; level 2: 8, quick 3)")
    p.add_argument("--block", type=int, default=2, help="level 2 motion block")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--strip", help="level 2: write a frame strip PNG of the first seeds here")
    p.add_argument("--no-sweep", action="store_true", help="level 2: the rows only, no sweep")
    p.add_argument("--flow-definition", choices=["paper", "released"], default="paper",
                   help="level 2: the Step-Skip Settings flow_definition of every guided row (released: no "
                        "'full AMF' row, no sweep)")
    args = p.parse_args(argv)
    if host is None:
        import comfy_host
        host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-quality-"))
        host.require_pack()
    res = {"machine": machine_line("cpu")}
    if args.level in ("1", "all"):
        res["level1"] = run_level1(host, list(range(args.seeds or (1 if args.smoke else 2 if args.quick else 3))),
                                   args.quick or args.smoke, smoke=args.smoke)
    if args.level in ("2", "all"):
        seeds = list(range(args.seeds or (1 if args.smoke else 3 if args.quick else 8)))
        # the released code's example: start from the reference noised to denoise 0.75
        definition = {"flow_definition": args.flow_definition}
        res["level2"] = run_level2(host, seeds, args.quick, block=args.block, denoise=0.75, strip=args.strip,
                                   sweep=not (args.smoke or args.no_sweep) and args.flow_definition == "paper",
                                   steps=8 if args.smoke else 20, overrides=definition)
        if not args.smoke:
            res["level2_t2v"] = run_level2(host, seeds, args.quick, block=args.block, denoise=1.0, sweep=False,
                                           overrides=definition)
    print(format_tables(res))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
