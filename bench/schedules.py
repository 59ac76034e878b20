"""Samplers and schedules: what guidance does on each sampler, and how the reference's
motion flow degrades with the noise it is re-noised to.

    python -m bench.schedules [--tables samplers reference] [--smoke] [--json bench_out/schedules.json]

samplers: for every sampler of KSampler's list, a guided run with a zero learning rate
against plain sampling (tiny random Wan 2.1 layout, 16 blocks, 20 steps, the first 4
guided, cfg 1). Single-step samplers must give 0 (the same latent); multistep ones
differ only by the history restart after each guided step.

reference: the agreement (cosine of the flattened displacement fields, less the flow of
pure noise that every input shares) of the motion flow read from the reference
re-noised to sigma with the flow read from the clean reference, on (a) level-1 known-motion latents with the tied-q/k random model and (b)
the shapes model of bench/models with shape clips. It is what the default
the old default ``reference_sigma_cap`` 0.8 was chosen from (docs/reference_noise.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import torch

import comfy_host

from bench import quality, shapes
from bench.sampling import graph as sampling_graph
from fastvmt_core import FastVMTSettings
from bench.amf import machine_line, write_json

TABLES = ("samplers", "reference")
SIGMAS = (0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0)


# --------------------------------------------------------------------------- samplers

def sampler_graph(model: str, sampler: str, steps: int, guided: bool) -> dict:
    """bench.sampling's graph at the test size, zero learning rate (guided must equal plain)."""
    return sampling_graph(model, frames=3, lat_h=8, lat_w=12, steps=steps, seed=7, block=3, span=3, window=5,
                          tile=(2, 2), cfg=1.0, sampler=sampler, text_tokens=8,
                          overrides=dict(mode="effi_AMF" if guided else "No_transfer", lr_start=0.0, lr_end=0.0,
                                         inner_steps=2))


def sampler_family(name: str) -> str:
    sampler = comfy_host.pack_module("nodes.wan.sampler")
    import comfy.samplers
    fn = comfy.samplers.sampler_object(name).sampler_function
    if sampler.single_step_function(fn) is not fn:
        return "Euler on guided steps"
    if sampler.shared_noise_sampler(fn, torch.zeros(1), torch.tensor([1.0, 0.5, 0.0]), 0) is not None:
        return "one noise stream"
    return "deterministic"


def run_samplers(host, smoke: bool) -> list[dict]:
    import comfy.samplers
    model = host.tiny_wan()
    steps = 5 if smoke else 20
    names = ["euler", "uni_pc"] if smoke else list(comfy.samplers.KSampler.SAMPLERS)
    rows = []
    for name in names:
        out = {}
        for guided in (False, True):
            res = host.run_graph(sampler_graph(model, name, steps, guided)).raise_for_error()
            out[guided] = res.output("sample", 0)["samples"]
        rel = float((out[True] - out[False]).norm() / out[False].norm())
        rows.append({"sampler": name, "family": sampler_family(name), "relative_difference": rel,
                     "identical": bool(torch.equal(out[True], out[False]))})
    return rows


# --------------------------------------------------------------------------- reference

def _load(path_or_name: str):
    import comfy.model_management
    import comfy.sd
    import folder_paths
    path = folder_paths.get_full_path_or_raise("diffusion_models", path_or_name)
    patcher = comfy.sd.load_diffusion_model(path)
    comfy.model_management.load_models_gpu([patcher])
    patcher.pre_run()  # what sampling does before the first model call
    return patcher


def _conds(base_model, context: torch.Tensor, latent: torch.Tensor):
    import comfy.sampler_helpers
    import comfy.samplers
    conds = {"positive": comfy.sampler_helpers.convert_cond([[context, {}]])}
    return comfy.samplers.process_conds(base_model, latent, conds, latent.device)["positive"]


def flow_agreement(patcher, latent: torch.Tensor, context: torch.Tensor, settings: FastVMTSettings,
                   sigmas=SIGMAS, noise_seeds=(0, 1)) -> dict:
    """Cosine between the flow of the re-noised reference and the flow of the clean one."""
    qk = comfy_host.pack_module("nodes.wan.qk_capture")
    reference = comfy_host.pack_module("nodes.wan.reference")
    base = patcher.model
    ms = base.model_sampling
    x0 = base.process_latent_in(latent.float())
    conds = _conds(base, context, x0)
    opts = patcher.model_options

    def flow(x, sigma):
        s = torch.tensor([float(sigma)])
        q, k = qk.capture_qk(qk.QKPass(base, conds, opts, settings.motion_block), x, s, qk.PassCounter())
        return reference.motion_flow(settings, q[0], k[0]).displacement.flatten()

    def noised(sigma, seed):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        return ms.noise_scaling(torch.tensor([sigma]), noise, x0, max_denoise=False)

    with torch.inference_mode():
        # The flow of any input shares a content-free part (positional bias, window clamping
        # at the borders); the mean flow of pure noise of other seeds measures it, and is removed.
        base_flow = torch.stack([flow(noised(1.0, 1000 + i), 1.0) for i in range(16)]).mean(0)
        clean = flow(x0, float(ms.sigma_min)) - base_flow
        out = {}
        for sigma in sigmas:
            values = [float(torch.nn.functional.cosine_similarity(flow(noised(sigma, seed), sigma) - base_flow,
                                                                  clean, dim=0)) for seed in noise_seeds]
            out[sigma] = statistics.mean(values)
    return out


def run_reference(host, smoke: bool) -> dict:
    seeds = [0] if smoke else [0, 1, 2]
    rows = []
    tied = _load(quality.level1_model(host, "random, tied q/k"))
    l1 = FastVMTSettings(motion_block=1, temporal_span=3, window=7, tile=(2, 2))
    ctx = torch.randn(1, 8, 4096, generator=torch.Generator().manual_seed(5))
    for kind in (("translation",) if smoke else quality.LEVEL1_MOTIONS):
        for seed in seeds:
            lat = quality.known_motion_latent(kind, *quality.LEVEL1_LATENT, seed=100 + seed)
            rows.append({"case": f"level 1, {kind}", "seed": seed, **{
                str(k): v for k, v in flow_agreement(tied, lat, ctx, l1).items()}})
    if not smoke:
        model = _load(quality.install_shapes_model(host))
        spec = shapes.ClipSpec()
        s2 = FastVMTSettings(motion_block=2, temporal_span=3, window=5, tile=(2, 2))
        for seed in range(8):
            ref = quality.shapes_reference(seed, spec)
            ctx = shapes.class_context(ref["a"])[None]
            rows.append({"case": "shapes model", "seed": seed, **{
                str(k): v for k, v in flow_agreement(model, ref["latent"], ctx, s2).items()}})
    summary = []
    for case in dict.fromkeys(r["case"] for r in rows):
        sel = [r for r in rows if r["case"] == case]
        summary.append({"case": case, **{str(s): statistics.mean(r[str(s)] for r in sel) for s in SIGMAS}})
    return {"runs": rows, "summary": summary}


def format_tables(res: dict) -> str:
    out = [f"Machine: {res['machine']}"]
    if res.get("samplers"):
        out += ["", "| sampler | guided steps | zero-lr result vs plain (relative difference) |", "|---|---|---|"]
        for r in res["samplers"]:
            diff = "identical" if r["identical"] else f"{r['relative_difference']:.2%}"
            out.append(f"| {r['sampler']} | {r['family']} | {diff} |")
    if res.get("reference"):
        out += ["", "| reference | " + " | ".join(f"sigma {s}" for s in SIGMAS) + " |",
                "|---|" + "---|" * len(SIGMAS)]
        for r in res["reference"]["summary"]:
            out.append(f"| {r['case']} | " + " | ".join(f"{r[str(s)]:.2f}" for s in SIGMAS) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.schedules", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    p.add_argument("--smoke", action="store_true", help="two samplers, one case (the test suite runs this)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-bench-"))
    host.require_pack()
    res = {"machine": machine_line("cpu")}
    if "samplers" in args.tables:
        res["samplers"] = run_samplers(host, args.smoke)
    if "reference" in args.tables:
        res["reference"] = run_reference(host, args.smoke)
    print(format_tables(res))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
