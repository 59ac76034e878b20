"""Motion controls on known motion: strength, camera apart from objects, regions.

    python -m bench.controls [--seeds N] [--smoke] [--json PATH]

Everything runs through ComfyUI's real executor, the graphs of ``bench.quality``.

Part 1, known camera and object motion (``bench.quality`` level 1: the random Wan whose
motion block's key projection equals its query projection, so its attention measures
similarity; guided steps from the reference's first frame held still, noised to sigma 0.5).
Three references with known motion, in latent pixels per latent frame: "pan" (a texture
moving (dx, dy) = (2, 1): camera only), "shape" (a still texture with a disc of another
texture moving (-1.5, 1): objects only) and "pan + shape" (both). The guided latent's motion
is read without the model by block matching (``bench.motion_estimate.block_motion``, cells of
4x4 latent pixels); its global motion is the robust affine fit of that field
(``fastvmt_core.fit_camera``), its object motion the residual on the disc's cells. Scores are
mean cosines (``displacement_agreement``, 1 = same motion): the clip's global motion against
the reference's camera, its residual on the disc against the disc's own motion (minus the
camera's). Rows: no transfer, transfer all / camera / objects; on "pan + shape" also strength 0 / 0.5 / 2
(all) and a generation mask on the left half (all): how much the motion changed, against
no transfer, inside and outside the mask.

Part 2, the tiny shapes model (``bench.quality`` level 2, from the reference noised to
denoise 0.75): a shape moving on a random path (object motion, no camera). Rows: no
transfer, strength 0 / 0.5 / 1 / 2, transfer camera (the summary must warn: the reference
has no camera motion), and strength 1 with a generation mask on the half of the frame where
the reference's path starts. The strength rows run again in text-to-video (denoise 1, an
empty latent), where the start carries none of the reference's motion. Scores: the centroid path's length (px), its gain (the
least-squares factor of the generated centroid steps on the reference's: 0 none of its
motion, 1 all, 2 twice) and step cosine with the reference, and for the mask the clip's
change against no transfer inside and outside it. Part 1 reports the same gain of the
block-matched field on the reference's known field.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

import numpy as np
import torch

from bench import quality, shapes
from bench.amf import machine_line, write_json
from bench.motion_estimate import block_motion, displacement_agreement
from fastvmt_core import fit_camera

KINDS = ("pan", "shape", "pan + shape")
CAMERA = (2.0, 1.0)      # (dx, dy) latent px per latent frame
OBJECT = (-1.5, 1.0)     # the disc's own motion in the frame
RADIUS = 5.0
CELLS = (4, 6)           # block-matching cells over the 16 x 24 latent (4 x 4 px each)
KNOWN_ROWS = {           # name -> Step-Skip Settings overrides (mask: generation mask on the left half)
    "no transfer": {"mode": "No_transfer"},
    "all": {},
    "camera": {"transfer": "camera"},
    "objects": {"transfer": "objects"},
    "strength 0": {"motion_strength": 0.0},
    "strength 0.5": {"motion_strength": 0.5},
    "strength 2": {"motion_strength": 2.0},
    "all, left-half mask": {"mask": True},
}
TRANSFER_ROWS = ("no transfer", "all", "camera", "objects")   # the rows of "pan" and "shape"; "pan + shape" has all
SMOKE_KNOWN_ROWS = ("no transfer", "camera", "all, left-half mask")
STRENGTH_ROWS = ("no transfer", "strength 0", "strength 0.5", "strength 1", "strength 2")
SHAPES_ROWS = {
    "no transfer": {"mode": "No_transfer"},
    "strength 0": {"motion_strength": 0.0},
    "strength 0.5": {"motion_strength": 0.5},
    "strength 1": {},
    "strength 2": {"motion_strength": 2.0},
    "camera": {"transfer": "camera"},
    "strength 1, half mask": {"mask": True},
}


# --------------------------------------------------------------------------- part 1

def _texture(g, h, w):
    base = torch.randn(1, 16, h // 2 + 12, w // 2 + 12, generator=g)
    base = torch.nn.functional.interpolate(base, scale_factor=4, mode="bicubic", align_corners=False)
    return (base - base.mean()) / base.std()


def _sample(tex, sx, sy, h, w):
    bh, bw = tex.shape[-2:]
    grid = torch.stack([(sx + (bw - w) / 2) / bw * 2 - 1, (sy + (bh - h) / 2) / bh * 2 - 1], -1)[None]
    return torch.nn.functional.grid_sample(tex, grid, mode="bilinear", align_corners=False)[0]


def known_reference(kind: str, seed: int, frames: int = 5, h: int = 16, w: int = 24) -> dict:
    """Model-space latent [1, 16, F, H, W] of a known camera and object motion, the disc's
    mask per frame [F, H, W] and the true motions ((dx, dy) px per frame)."""
    g = torch.Generator().manual_seed(500 + seed)
    background, disc_tex = _texture(g, h, w), _texture(g, h, w)
    camera = CAMERA if "pan" in kind else (0.0, 0.0)
    obj = OBJECT if "shape" in kind else None
    start = torch.tensor([14.0, 5.0]) + torch.rand(2, generator=g) * 2
    ys = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w) + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w) + 0.5
    out, masks = [], []
    for t in range(frames):  # a handful of whole-frame warps
        frame = _sample(background, xs - camera[0] * t, ys - camera[1] * t, h, w)
        inside = torch.zeros(h, w, dtype=torch.bool)
        if obj is not None:
            cx, cy = start[0] + obj[0] * t, start[1] + obj[1] * t
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= RADIUS ** 2
            frame = torch.where(inside, _sample(disc_tex, xs - obj[0] * t, ys - obj[1] * t, h, w), frame)
        out.append(frame)
        masks.append(inside)
    return {"latent": torch.stack(out, 1)[None], "disc": torch.stack(masks), "camera": camera, "object": obj}


def _cells_of(mask: torch.Tensor) -> np.ndarray:
    """Per-frame pixel mask [F, H, W] -> cells more than half inside, for frames 0..F-2 [F-1, rows, cols]."""
    f, h, w = mask.shape
    cells = mask[:-1].float().reshape(f - 1, CELLS[0], h // CELLS[0], CELLS[1], w // CELLS[1]).mean(dim=(2, 4))
    return (cells > 0.5).numpy()


def global_and_objects(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block-motion field [T, rows, cols, 2] (dx, dy) -> its robust affine (camera) field and residual."""
    yx = torch.from_numpy(field[..., ::-1].copy()).float()
    fit = fit_camera(yx)
    camera = fit.field.numpy()[..., ::-1]
    return camera, field - camera


def gain(motion: np.ndarray, reference: np.ndarray) -> float:
    """How much of the reference's motion a clip has: the least-squares factor g of
    ``motion ~ g * reference`` (vectors [..., 2]): 0 for none (or unrelated motion), 1 for
    all of it, 2 for twice as much."""
    den = float((reference * reference).sum())
    return float((motion * reference).sum()) / den if den > 0 else float("nan")


def score_known(ref: dict, z: torch.Tensor) -> dict:
    field = block_motion(z.transpose(0, 1).numpy(), CELLS, max_shift=4)
    camera, residual = global_and_objects(field)
    true_camera = np.broadcast_to(np.asarray(ref["camera"]), camera.shape)
    true = np.array(true_camera)
    out = {"camera_cos": displacement_agreement(camera, true_camera, still_px=0.1),
           "magnitude": float(np.linalg.norm(field, axis=-1).mean()),
           "global_px": float(np.linalg.norm(camera, axis=-1).mean())}
    if ref["object"] is not None:
        cells = _cells_of(ref["disc"])
        own = np.asarray(ref["object"]) - np.asarray(ref["camera"])
        out["object_cos"] = displacement_agreement(residual[cells], np.broadcast_to(own, residual[cells].shape),
                                                   still_px=0.1)
        true[cells] = np.asarray(ref["object"])
    out["gain"] = gain(field, true)
    out["field"] = field
    return out


def known_graph(model, ref_name, start_name, seed, overrides):
    frames, lat_h, lat_w = quality.LEVEL1_LATENT
    over = {k: v for k, v in overrides.items() if k != "mask"}
    g = quality.level1_graph(model, ref_name, start_name, frames=frames, lat_h=lat_h, lat_w=lat_w, seed=seed,
                             overrides=over, add_noise=True)
    if overrides.get("mask"):
        _box_mask(g, "patched", lat_w * 8, lat_h * 8, (0, 0, lat_w * 4, lat_h * 8))
    return g


def _box_mask(g, into, width, height, box):
    """A generation mask from ComfyUI's own mask nodes: a white box on black."""
    x, y, w, h = box
    g["mask_bg"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": width, "height": height}}
    g["mask_box"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": w, "height": h}}
    g["mask"] = {"class_type": "MaskComposite", "inputs": {"destination": ["mask_bg", 0], "source": ["mask_box", 0],
                                                           "x": x, "y": y, "operation": "add"}}
    g[into]["inputs"]["generation_mask"] = ["mask", 0]


def run_known(host, seeds, kinds=KINDS, rows=None) -> dict:
    """``rows``: the same rows for every reference; default: KNOWN_ROWS on "pan + shape",
    TRANSFER_ROWS on the others (strength and mask rows once, where both motions are present)."""
    model = quality.level1_model(host, "random, tied q/k")
    runs = []
    for kind in kinds:
        for seed in seeds:
            ref = known_reference(kind, seed)
            tag = kind.replace(" + ", "_")
            ref_name = quality.put_latent(ref["latent"], f"fastvmt_ctl_{tag}_{seed}")
            start = quality.put_latent(ref["latent"][:, :, :1].expand_as(ref["latent"]).contiguous(),
                                       f"fastvmt_ctl_{tag}_{seed}_still")
            fields = {}
            kind_rows = rows if rows is not None else (
                KNOWN_ROWS if kind == "pan + shape" else {k: KNOWN_ROWS[k] for k in TRANSFER_ROWS})
            for row, over in kind_rows.items():
                t0 = time.perf_counter()
                res = host.run_graph(known_graph(model, ref_name, start, seed, over)).raise_for_error()
                m = score_known(ref, quality.model_space(res.output("sample", 0))[0])
                fields[row] = m.pop("field")
                runs.append({"kind": kind, "seed": seed, "row": row, **m, "seconds": time.perf_counter() - t0})
            _mask_change(runs, fields, kind, seed)
    return {"setup": {"model": quality.LEVEL1_MODELS["random, tied q/k"], "latent": [16, *quality.LEVEL1_LATENT],
                      "camera_px": CAMERA, "object_px": OBJECT, "disc_radius_px": RADIUS, "cells": CELLS,
                      "start": "the reference's first frame held still, noised to sigma 0.5; lr 0.03; clean reference",
                      "seeds": seeds}, "runs": runs}


def _mask_change(runs, fields, kind, seed):
    """Motion change against no transfer, left half (the mask) and right half, for the masked
    row and for the same row without the mask."""
    if "no transfer" not in fields:
        return
    half = CELLS[1] // 2
    for row, masked in (("all", False), ("all, left-half mask", True)):
        if row not in fields:
            continue
        diff = np.linalg.norm(fields[row] - fields["no transfer"], axis=-1)
        r = next(x for x in runs if x["kind"] == kind and x["seed"] == seed and x["row"] == row)
        r["change_left"], r["change_right"] = float(diff[..., :half].mean()), float(diff[..., half:].mean())


# --------------------------------------------------------------------------- part 2

def shapes_graph(model, ref_name, prompt, seed, overrides, steps, mask_box=None, denoise=0.75):
    spec = shapes.ClipSpec()
    over = {k: v for k, v in overrides.items() if k != "mask"}
    g = quality.level2_graph(model, ref_name, prompt, spec=spec, seed=seed, overrides=over, block=2, steps=steps,
                             cfg=4.0, denoise=denoise)
    if overrides.get("mask"):
        _box_mask(g, "sample", spec.size * 8, spec.size * 8, mask_box)
    return g


def run_shapes(host, seeds, rows=SHAPES_ROWS, steps: int = 20, denoise: float = 0.75) -> dict:
    model = quality.install_shapes_model(host)
    spec = shapes.ClipSpec()
    runs = []
    for seed in seeds:
        ref = quality.shapes_reference(seed, spec)
        name = quality.put_latent(ref["latent"], f"fastvmt_ctl_shapes_{seed}")
        # the half of the frame (left / right) where the reference's path starts, in video pixels
        left = float(ref["path"][0, 0]) < spec.size / 2
        half = spec.size * 4
        box = (0 if left else half, 0, half, spec.size * 8)
        clips = {}
        for row, over in rows.items():
            t0 = time.perf_counter()
            res = host.run_graph(shapes_graph(model, name, shapes.CLASSES[ref["b"]], seed, over, steps,
                                              box, denoise)).raise_for_error()
            clip = shapes.decode(quality.model_space(res.output("sample", 0)))[0]
            clips[row] = clip
            path = shapes.centroid_path(clip)
            text = (res.ui_output("sample").get("text") or [""])[0]
            steps_ref = (ref["path"][1:] - ref["path"][:-1]).numpy()
            runs.append({"seed": seed, "row": row, "path_px": float((path[1:] - path[:-1]).norm(dim=1).sum()),
                         "gain": gain((path[1:] - path[:-1]).numpy(), steps_ref),
                         "ref_path_px": float((ref["path"][1:] - ref["path"][:-1]).norm(dim=1).sum()),
                         "step_cos": quality.score_clip(ref, clip)["step_cos"],
                         "camera_warning": "almost no camera motion" in text, "seconds": time.perf_counter() - t0})
        if "no transfer" in clips and "strength 1, half mask" in clips:
            diff = (clips["strength 1, half mask"] - clips["no transfer"]).abs()
            cols = slice(0, spec.size // 2) if left else slice(spec.size // 2, None)
            inside = torch.zeros(spec.size, dtype=torch.bool)
            inside[cols] = True
            r = runs[-len(rows) + list(rows).index("strength 1, half mask")]
            r["change_inside"], r["change_outside"] = float(diff[..., inside].mean()), float(diff[..., ~inside].mean())
    return {"setup": {"model": quality.SHAPES_MODEL.name, "denoise": denoise, "steps": steps, "motion_block": 2,
                      "seeds": seeds, "mask": "the half of the frame where the reference's path starts"},
            "runs": runs}


# --------------------------------------------------------------------------- tables

def _mean(rows, key):
    vals = [r[key] for r in rows if key in r]
    return (statistics.fmean(vals), statistics.pstdev(vals)) if vals else None


def summarise(runs, keys, metrics) -> list:
    groups: dict = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        item = dict(zip(keys, key), n=len(rs))
        for m in metrics:
            item[m] = _mean(rs, m)
        out.append(item)
    return out


def _fmt(v, spread=True):
    if v is None:
        return "-"
    return f"{v[0]:.2f} +- {v[1]:.2f}" if spread else f"{v[0]:.2f}"


def format_tables(res: dict) -> str:
    out = [f"Machine: {res['machine']}"]
    if "known" in res:
        out += ["", "Known camera and object motion (random Wan, motion block W_k = W_q; block-matched latent motion):",
                "", "| reference | row | global motion vs reference camera (cosine) | objects vs disc's own motion "
                "(cosine) | motion px/frame | gain of the reference motion | left-half change | right-half change "
                "| seeds |", "|---|---|---|---|---|---|---|---|---|"]
        for r in res["known"]["summary"]:
            out.append(f"| {r['kind']} | {r['row']} | {_fmt(r['camera_cos'])} | {_fmt(r['object_cos'])} | "
                       f"{_fmt(r['magnitude'])} | {_fmt(r['gain'])} | {_fmt(r['change_left'], False)} | "
                       f"{_fmt(r['change_right'], False)} | {r['n']} |")
    for key, start in (("shapes", "from the reference noised to denoise 0.75"),
                       ("shapes_t2v", "text-to-video from an empty latent")):
        if key not in res:
            continue
        out += ["", f"Tiny shapes model, a shape on a random path (no camera motion), {start}:", "",
                "| row | centroid path px (reference: {:.1f}) | gain of the reference path | step cosine | "
                "'no camera motion' warning | change in mask half | other half | seeds |".format(
                    res[key]["reference_path_px"]), "|---|---|---|---|---|---|---|---|"]
        for r in res[key]["summary"]:
            warn = f"{r['camera_warning'][0]:.0%}" if r["camera_warning"] else "-"
            out.append(f"| {r['row']} | {_fmt(r['path_px'])} | {_fmt(r['gain'])} | {_fmt(r['step_cos'])} | {warn} | "
                       f"{_fmt(r['change_inside'], False)} | {_fmt(r['change_outside'], False)} | {r['n']} |")
    return "\n".join(out)


def _shapes_summary(part: dict) -> dict:
    runs = part["runs"]
    part["reference_path_px"] = statistics.fmean(r["ref_path_px"] for r in runs)
    part["summary"] = summarise(runs, ("row",), ("path_px", "gain", "step_cos", "camera_warning", "change_inside",
                                                 "change_outside"))
    return part


def cli(argv=None, host=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.controls", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 8; smoke 1)")
    p.add_argument("--smoke", action="store_true", help="1 seed, the 'pan + shape' reference, a few rows (the tests)")
    p.add_argument("--part", choices=["known", "shapes", "all"], default="all")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if host is None:
        import comfy_host
        host = comfy_host.get_host() or comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-controls-"))
    host.require_pack()
    seeds = list(range(args.seeds or (1 if args.smoke else 8)))
    argv = sys.argv[1:] if argv is None else argv
    res = {"machine": machine_line("cpu"), "command": " ".join(["python -m bench.controls", *argv])}
    if args.part in ("known", "all"):
        kw = {}
        if args.smoke:
            kw = dict(kinds=("pan + shape",), rows={k: KNOWN_ROWS[k] for k in SMOKE_KNOWN_ROWS})
        res["known"] = run_known(host, seeds, **kw)
        res["known"]["summary"] = summarise(res["known"]["runs"], ("kind", "row"), ("camera_cos", "object_cos",
                                            "magnitude", "gain", "change_left", "change_right"))
    if args.part in ("shapes", "all"):
        kw = dict(steps=6, rows={k: SHAPES_ROWS[k] for k in ("no transfer", "camera")}) if args.smoke else {}
        res["shapes"] = _shapes_summary(run_shapes(host, seeds, **kw))
        if not args.smoke:  # strength from an empty latent: no reference motion in the start
            rows = {k: SHAPES_ROWS[k] for k in STRENGTH_ROWS}
            res["shapes_t2v"] = _shapes_summary(run_shapes(host, seeds, rows=rows, denoise=1.0))
    print(format_tables(res))
    if args.json:
        write_json(args.json, res)
    return res


def main(argv=None) -> int:
    cli(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
