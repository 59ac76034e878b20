"""Does a model's attention carry motion where guidance reads it?

    python -m bench.quality --check-model MODEL [--clip VIDEO --vae VAE] [--steps 12] [--shift 8]
                            [--denoise 1.0] [--blocks 0,3] [--seeds 3] [--json out.json]

FastVMT assumes that the motion block's queries/keys, on a latent noised to a guided
step's sigma, carry the clip's motion. This check measures that, per block and sigma:

- the flow's **motion part**: the flow (``fastvmt_core.motion_flow``, the paper's
  definition) of the moving reference minus the flow of its still twin (frame 0 held),
  both noised with the same noise; its cosine with the true motion (flattened over tokens
  and frame pairs) and its end-point error, in tokens;
- the **noise-level bias**: the mean length of the still twin's flow, which is motion the
  flow reports where there is none.

Sigmas: those of the guided steps of ``--steps`` euler steps on ComfyUI's ``--scheduler``
at the model's shift (``--shift`` overrides it, as ModelSamplingSD3 does) and
``--denoise``, the first ``--guided-fraction`` of the process, plus 0 (clean), 0.5 and
0.8 for context. At sigma 1 the latent is pure noise and no motion can be read.

A model "can test guidance" at a block when the motion part's cosine is at least 0.5 at
every guided sigma below 1. References (``bench.check_model_refs``): the shapes models'
own clips with their known camera and shape paths; a moving texture in latent space for
any other Wan model; or, with ``--clip`` and ``--vae``, a real clip, whose motion is read
by a classical optical flow instead of a ground truth (the cosine is then "agreement").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench import check_model_refs as refs
from bench import shapes_v2
from bench.amf import machine_line, write_json
from fastvmt_core import FastVMTSettings, motion_flow

CONTEXT_SIGMAS = (0.0, 0.5, 0.8)
PASS_COSINE = 0.5
PURE_NOISE = 0.9999


@dataclass(frozen=True)
class CheckOptions:
    model: Path
    clip: Path | None = None
    vae: Path | None = None
    steps: int = 12
    scheduler: str = "simple"
    shift: float | None = None      # None: the model's own
    denoise: float = 1.0
    guided_fraction: float = 0.2
    blocks: tuple | None = None     # None: every block
    seeds: int = 3
    window: int = 9
    span: int = 3
    width: int = 320                # --clip: pixels the clip is resized to, and its frame count
    height: int = 192
    length: int = 33


# --------------------------------------------------------------------------- loading

def load_wan(path: Path):
    """ComfyUI's diffusion-model loader (what UNETLoader runs), refusing what is not a
    text-to-video Wan checkpoint with an error that names the file and the fix."""
    import comfy.model_management
    import comfy.sd
    import comfy_host
    compat = comfy_host.pack_module("nodes.wan.comfy_compat")
    hint = "give a Wan 2.1 / 2.2 text-to-video diffusion model (.safetensors, as UNETLoader loads it)"
    if not path.is_file():
        raise SystemExit(f"--check-model {path}: no such file; {hint}")
    try:
        patcher = comfy.sd.load_diffusion_model(str(path))
    except Exception as exc:   # ComfyUI's loader raises several kinds for files it cannot read
        raise SystemExit(f"--check-model {path}: ComfyUI could not load it as a diffusion model ({exc}); {hint}")
    dm = patcher.model.diffusion_model
    if not compat.is_wan_model(dm):
        raise SystemExit(f"--check-model {path}: ComfyUI reads it as {type(dm).__name__}, not a Wan model; {hint}")
    if getattr(dm, "model_type", "t2v") != "t2v" or patcher.model.latent_format.latent_channels != dm.in_dim:
        raise SystemExit(f"--check-model {path}: an image-to-video Wan model (its input has start-image "
                         f"channels); {hint}")
    comfy.model_management.load_models_gpu([patcher])
    patcher.pre_run()
    return patcher


def shapes_settings(path: Path) -> dict | None:
    """The training settings of a shapes model of ``bench.train_shapes`` (its metadata), else None."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = (f.metadata() or {}).get("fastvmt_shapes")
    return json.loads(meta)["settings"] if meta else None


# --------------------------------------------------------------------------- sigmas

def schedule_sigmas(patcher, opts: CheckOptions) -> tuple[list[float], list[float]]:
    """(all sigmas of the schedule, the guided steps' sigmas), as the Guidance Sampler guides them."""
    import comfy.samplers
    import comfy_host
    sampler = comfy_host.pack_module("nodes.wan.sampler")
    ms = patcher.model.model_sampling
    if opts.shift is not None:
        import comfy.model_sampling
        ms = comfy.model_sampling.ModelSamplingDiscreteFlow(patcher.model.model_config)
        ms.set_parameters(shift=opts.shift, multiplier=1000)
    total = opts.steps if opts.denoise >= 1.0 else int(opts.steps / opts.denoise)
    sigmas = comfy.samplers.calculate_sigmas(ms, opts.scheduler, total)[-(opts.steps + 1):]
    noise = torch.ones(1)
    rng = sampler.guided_range(ms, sigmas, noise, opts.guided_fraction)
    return [float(s) for s in sigmas], [float(s) for s in sigmas[:rng.n_guided]]


# --------------------------------------------------------------------------- passes

def block_qks(patcher, conds, x: torch.Tensor, sigma: float, blocks) -> dict:
    """One model pass on ``x`` at ``sigma``; the head-averaged queries/keys of each of
    ``blocks``, ``{block: (q, k)}`` with q, k ``[F, H, W, D]``."""
    import comfy_host
    compat = comfy_host.pack_module("nodes.wan.comfy_compat")
    geometry = comfy_host.pack_module("nodes.wan.geometry")
    base = patcher.model
    dm = base.diffusion_model
    opts = compat.guidance_pass_options(patcher.model_options)
    got = {}

    def recorder(index):
        def patch(args, extra):
            got[index] = compat.block_qk(dm.blocks[index], *compat.block_inputs(args))
            return compat.run_original_block(args, extra)
        return patch
    for b in blocks:
        opts = compat.add_block_patch(opts, recorder(b), b)
    s = torch.tensor([float(sigma)], device=x.device)
    compat.calc_cond_batch(base, [conds], x, s, opts)
    f, h, w = geometry.token_grid(x.shape, dm.patch_size)
    n = f * h * w
    return {b: (q[0, :n].reshape(f, h, w, -1), k[0, :n].reshape(f, h, w, -1)) for b, (q, k) in got.items()}


def model_conds(patcher, context: torch.Tensor, latent: torch.Tensor):
    import comfy_host
    compat = comfy_host.pack_module("nodes.wan.comfy_compat")
    conds = {"positive": compat.convert_cond([[context, {}]])}
    return compat.process_conds(patcher.model, latent, conds, latent.device, None, None, 0)["positive"]


def flows_at(patcher, ref: refs.Reference, settings: FastVMTSettings, sigma: float, blocks, seed: int) -> dict:
    """``{block: (moving flow, still flow)}`` displacements ``[P, H, W, 2]`` at ``sigma``; both
    inputs share one noise draw, so their difference is what the clip's content adds."""
    base = patcher.model
    device = patcher.load_device
    x0 = ref.latent.to(device, torch.float32)
    still = ref.still.to(device, torch.float32)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(90_000 + seed)).to(device)
    s = torch.tensor([float(sigma)], device=device)
    context = ref.context if ref.context is not None else torch.zeros(1, 8, 4096)
    conds = model_conds(patcher, context.to(device), x0)
    out = {}
    with torch.inference_mode():
        moving = block_qks(patcher, conds, base.model_sampling.noise_scaling(s, noise, x0, max_denoise=False), sigma,
                           blocks)
        held = block_qks(patcher, conds, base.model_sampling.noise_scaling(s, noise, still, max_denoise=False), sigma,
                         blocks)
        for b in blocks:
            out[b] = (motion_flow(settings, *moving[b]).displacement.float().cpu(),
                      motion_flow(settings, *held[b]).displacement.float().cpu())
    return out


# --------------------------------------------------------------------------- scores

def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    na, nb = float(a.norm()), float(b.norm())
    return float((a * b).sum()) / (na * nb) if na > 0 and nb > 0 else 0.0


def motion_scores(moving: torch.Tensor, still: torch.Tensor, truth: torch.Tensor) -> dict:
    """Cosine and end-point error (tokens) of the motion part against ``truth``, the motion
    part's and the truth's mean length, and the still flow's mean length (the bias); over the
    tokens whose true destination stays in the frame (``check_model_refs.inside``)."""
    keep = refs.inside(truth)
    part, truth, still = (moving - still)[keep], truth[keep], still[keep]
    return {"cosine": cosine(part.flatten(), truth.flatten()),
            "epe": float((part - truth).norm(dim=-1).mean()),
            "motion_part": float(part.norm(dim=-1).mean()),
            "truth": float(truth.norm(dim=-1).mean()),
            "bias": float(still.norm(dim=-1).mean())}


# --------------------------------------------------------------------------- references

def clip_frames(path: Path, opts: CheckOptions):
    """The first frames of ``path`` (4k + 1 of them, at most ``--length``), RGB uint8 resized to
    ``--width`` x ``--height``; a clear error when OpenCV reads none or too few for the span."""
    import cv2
    import numpy as np
    if not path.is_file():
        raise SystemExit(f"--clip {path}: no such file; give a video file OpenCV can read (.mp4, .webm, .mov)")
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < opts.length:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (opts.width, opts.height),
                                 interpolation=cv2.INTER_AREA))
    cap.release()
    need = 4 * opts.span + 1
    if len(frames) < need:
        raise SystemExit(f"--clip {path}: {len(frames)} frames read, but --span {opts.span} compares latent frames "
                         f"up to {opts.span} apart, which needs at least {need} video frames (4 x span + 1); "
                         f"give a longer clip or a smaller --span (at most {max(0, (len(frames) - 1) // 4)})")
    return np.stack(frames[:(len(frames) - 1) // 4 * 4 + 1])


def video_reference(patcher, opts: CheckOptions) -> refs.Reference:
    """A real clip through the Wan VAE, its still twin (frame 0 held, encoded the same way)
    and Farneback's motion of its pixels."""
    import comfy.sd
    import comfy.utils
    from fastvmt_core import frame_pairs
    if opts.vae is None or not Path(opts.vae).is_file():
        raise SystemExit(f"--vae {opts.vae}: --clip needs the Wan VAE file that matches the model "
                         "(e.g. wan_2.1_vae.safetensors from models/vae)")
    frames = clip_frames(Path(opts.clip), opts)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(opts.vae)))
    channels = patcher.model.latent_format.latent_channels
    if getattr(vae, "latent_channels", channels) != channels:
        raise SystemExit(f"--vae {opts.vae}: its latent has {vae.latent_channels} channels, the model's "
                         f"{channels}; use the VAE of the model's family")
    token_px = vae.spacial_compression_encode() * patcher.model.diffusion_model.patch_size[-1]
    if opts.width % token_px or opts.height % token_px:
        raise SystemExit(f"--width {opts.width} --height {opts.height}: use multiples of {token_px} "
                         "(the VAE's downscale times the DiT patch)")
    pixels = torch.from_numpy(frames).float() / 255.0
    latent = patcher.model.process_latent_in(vae.encode(pixels).float().cpu())
    still = patcher.model.process_latent_in(vae.encode(pixels[:1].expand_as(pixels)).float().cpu())
    pairs = frame_pairs(latent.shape[2], opts.span)
    return refs.Reference(f"clip {Path(opts.clip).name}", latent, still, None,
                          classical=refs.classical_motion(frames, pairs, token_px))


def references(patcher, opts: CheckOptions) -> list:
    if opts.clip is not None:
        return [video_reference(patcher, opts)]
    trained = shapes_settings(opts.model) or {}
    kind = trained.get("data", "v1") if trained else None
    if kind == "v2":   # the level-3 references: the camera always moves, as far as the model was trained to
        spec = shapes_v2.ClipSpecV2(camera_p=1.0, pan=trained.get("pan", shapes_v2.ClipSpecV2.pan))
        return [refs.shapes_v2_reference(s, opts.span, spec) for s in range(opts.seeds)]
    if kind == "v1":
        return [refs.shapes_v1_reference(s, opts.span) for s in range(opts.seeds)]
    channels = patcher.model.latent_format.latent_channels
    kinds = ("translation", "apart")
    return [refs.texture_reference(kinds[s % 2], s, opts.span, frames=8, size=(16, 24), channels=channels)
            for s in range(opts.seeds)]


# --------------------------------------------------------------------------- the check

def flow_settings(ref: refs.Reference, opts: CheckOptions, patch: int) -> FastVMTSettings:
    """Paper flow settings for this reference: ``--window``, shrunk to the largest odd size
    the token grid holds."""
    h, w = ref.latent.shape[-2] // patch, ref.latent.shape[-1] // patch
    fits = min(h, w) if min(h, w) % 2 else min(h, w) - 1
    return FastVMTSettings(window=min(opts.window, fits), temporal_span=opts.span, tile=(2, 2))


def run_check(patcher, opts: CheckOptions, refs_list: list) -> dict:
    dm = patcher.model.diffusion_model
    blocks = tuple(opts.blocks) if opts.blocks is not None else tuple(range(len(dm.blocks)))
    bad = [b for b in blocks if not 0 <= b < len(dm.blocks)]
    if bad:
        raise SystemExit(f"--blocks {bad}: the model has blocks 0..{len(dm.blocks) - 1}")
    schedule, guided = schedule_sigmas(patcher, opts)
    sigmas = sorted({round(s, 4) for s in guided} | set(CONTEXT_SIGMAS), reverse=True)
    rows = []
    for i, ref in enumerate(refs_list):
        settings = flow_settings(ref, opts, dm.patch_size[-1])
        truth = ref.truth if ref.truth is not None else ref.classical
        for sigma in sigmas:
            for b, (moving, still) in flows_at(patcher, ref, settings, sigma, blocks, i).items():
                m = motion_scores(moving, still, truth)
                if sigma >= PURE_NOISE:   # moving and still inputs are the same noise
                    m.update(cosine=None, epe=None)
                rows.append({"reference": ref.name, "sigma": sigma, "block": b, "window": settings.window, **m})
    summary = summarise(rows)
    return {"setup": {"model": Path(opts.model).name, "steps": opts.steps, "scheduler": opts.scheduler,
                      "shift": opts.shift, "denoise": opts.denoise, "guided_fraction": opts.guided_fraction,
                      "span": opts.span, "window": opts.window, "references": [r.name for r in refs_list],
                      "against": "classical optical flow (Farneback)" if opts.clip else "ground truth",
                      "schedule_sigmas": schedule, "guided_sigmas": guided},
            "rows": rows, "summary": summary, "verdict": verdict(summary, guided)}


def summarise(rows: list) -> list:
    out = []
    for key in sorted({(r["block"], r["sigma"]) for r in rows}, key=lambda k: (k[0], -k[1])):
        sel = [r for r in rows if (r["block"], r["sigma"]) == key]
        item = {"block": key[0], "sigma": key[1]}
        for m in ("cosine", "epe", "motion_part", "truth", "bias"):
            vals = [r[m] for r in sel if r[m] is not None]
            item[m] = statistics.fmean(vals) if vals else None
        out.append(item)
    return out


def verdict(summary: list, guided: list) -> dict:
    """Per block: the worst motion-part cosine over the guided sigmas below 1, and whether it
    reaches PASS_COSINE; the model can test guidance if some block does."""
    readable = sorted({round(s, 4) for s in guided if s < PURE_NOISE}, reverse=True)
    per_block = {}
    for b in sorted({r["block"] for r in summary}):
        cos = [r["cosine"] for r in summary if r["block"] == b and r["sigma"] in readable]
        worst = min(cos) if cos else None
        per_block[b] = {"worst_guided_cosine": worst, "passes": bool(worst is not None and worst >= PASS_COSINE)}
    passing = [b for b, v in per_block.items() if v["passes"]]
    return {"readable_guided_sigmas": readable, "pure_noise_guided_steps": sum(s >= PURE_NOISE for s in guided),
            "blocks": per_block, "passing_blocks": passing, "can_test_guidance": bool(passing)}


def _fmt(v, digits=2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def format_report(res: dict) -> str:
    s, v = res["setup"], res["verdict"]
    sigmas = sorted({r["sigma"] for r in res["summary"]}, reverse=True)
    by = {(r["block"], r["sigma"]): r for r in res["summary"]}
    guided = {round(x, 4) for x in s["guided_sigmas"]}
    head = " | ".join(f"sigma {x:g}{' (guided)' if x in guided else ''}" for x in sigmas)
    out = [f"Model check: {s['model']}; motion part (moving - still flow) against the {s['against']}, "
           f"{len(s['references'])} reference(s); {s['steps']} {s['scheduler']} steps, denoise {s['denoise']}, "
           f"guided sigmas {', '.join(f'{x:.3f}' for x in s['guided_sigmas']) or 'none'}", "",
           "Cosine / end-point error (tokens) of the motion part:", "", f"| block | {head} |",
           "|---|" + "---|" * len(sigmas)]
    for b in sorted({r["block"] for r in res["summary"]}):
        out.append(f"| {b} | " + " | ".join(f"{_fmt(by[(b, x)]['cosine'])} / {_fmt(by[(b, x)]['epe'])}"
                                              for x in sigmas) + " |")
    out += ["", "Noise-level bias (mean length of the still clip's flow, tokens) / motion part's mean length "
            "(true motion's mean length: " + _fmt(res["summary"][0]["truth"]) + "):", "",
            f"| block | {head} |", "|---|" + "---|" * len(sigmas)]
    for b in sorted({r["block"] for r in res["summary"]}):
        out.append(f"| {b} | " + " | ".join(f"{_fmt(by[(b, x)]['bias'])} / {_fmt(by[(b, x)]['motion_part'])}"
                                              for x in sigmas) + " |")
    if v["pure_noise_guided_steps"]:
        out += ["", f"{v['pure_noise_guided_steps']} guided step(s) sit at sigma 1: the latent is pure noise there "
                "and no model can read the reference's motion."]
    if not v["readable_guided_sigmas"]:
        verdict_line = "no guided step below sigma 1: this schedule cannot test guidance with any model"
    elif v["can_test_guidance"]:
        verdict_line = (f"CAN test guidance at block(s) {', '.join(map(str, v['passing_blocks']))} (motion-part "
                        f"cosine >= {PASS_COSINE} at every guided sigma below 1)")
    else:
        best = max(v["blocks"].items(), key=lambda kv: kv[1]["worst_guided_cosine"] or -1)
        verdict_line = (f"CANNOT test guidance: no block reaches a motion-part cosine of {PASS_COSINE} at every "
                        f"guided sigma below 1 (best: block {best[0]}, "
                        f"{_fmt(best[1]['worst_guided_cosine'])})")
    return "\n".join(out + ["", "Verdict: " + verdict_line])


def options(argv) -> tuple[CheckOptions, str | None]:
    p = argparse.ArgumentParser(prog="python -m bench.quality --check-model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-model", dest="model", type=Path, required=True, help="the Wan diffusion model file")
    p.add_argument("--clip", type=Path, help="a real clip (needs --vae); its motion is read by optical flow")
    p.add_argument("--vae", type=Path, help="the Wan VAE that encodes --clip")
    for name, value in (("steps", 12), ("scheduler", "simple"), ("denoise", 1.0), ("guided-fraction", 0.2),
                        ("seeds", 3), ("window", 9), ("span", 3), ("width", 320), ("height", 192), ("length", 33)):
        p.add_argument("--" + name, type=type(value), default=value, help=f"default {value}")
    p.add_argument("--shift", type=float, default=None, help="sampling shift (default: the model's own)")
    p.add_argument("--blocks", help="comma list of blocks (default: all)")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    if not 0 < a.denoise <= 1 or a.steps < 1 or a.span < 1 or a.seeds < 1:
        raise SystemExit("--denoise must be in (0, 1], --steps, --span and --seeds at least 1")
    if a.clip is None and a.vae is not None:
        raise SystemExit("--vae is only used with --clip; give the clip too")
    blocks = None
    if a.blocks:
        try:
            blocks = tuple(int(b) for b in a.blocks.split(","))
        except ValueError:
            raise SystemExit(f"--blocks {a.blocks!r}: a comma list of block numbers, e.g. 0,3,5") from None
    opts = CheckOptions(model=a.model, clip=a.clip, vae=a.vae, blocks=blocks, shift=a.shift,
                        **{k: getattr(a, k) for k in ("steps", "scheduler", "denoise", "guided_fraction", "seeds",
                                                      "window", "span", "width", "height", "length")})
    return (replace(opts, seeds=1) if opts.clip is not None else opts), a.json


def main(argv=None, host=None) -> int:
    opts, json_path = options(argv)
    if opts.clip is not None:   # the clip's errors come before the model loads
        clip_frames(Path(opts.clip), opts)
        if opts.vae is None or not Path(opts.vae).is_file():
            raise SystemExit(f"--vae {opts.vae}: --clip needs the Wan VAE file that matches the model "
                             "(e.g. wan_2.1_vae.safetensors from models/vae)")
    if host is None:
        import comfy_host
        host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-check-"))
        host.require_pack()
    patcher = load_wan(Path(opts.model))
    res = {"machine": machine_line(str(patcher.load_device)),
           **run_check(patcher, opts, references(patcher, opts))}
    print(format_report(res))
    if json_path:
        write_json(json_path, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
