"""Where to read the reference: its noise level at a guided step, side by side.

    python -m bench.reference_sigma [--level 2|3] [--starts t2v,v2v] [--steps 12] [--seeds 6]
                                    [--options same,cap0.8,clean] [--json out.json]

Each option is a Step-Skip Settings change; every run is scored as its level scores it
(level 2: ``bench.quality.score_clip`` on the v1 shapes model; level 3:
``bench.quality_v3.score`` on the v2 model) and paired with the no-transfer run of the
same seed and start. ``--steps 4`` is the few-step case (4 euler steps at the model's
shift: the first step is guided and sits at sigma 1.0, as on a 4-step distilled
schedule; the proxies themselves are not distilled).

Options: ``same`` reads the reference at the guided step's own sigma (the default since
#32), ``capX`` at min(sigma, X) (the old default was cap0.8), ``clean`` once from the
clean latent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace

from bench import quality as q
from bench import quality_v3 as v3
from bench import shapes
from bench.amf import machine_line, write_json

LEVEL_STEPS = {"2": 20, "3": 12}


def option_settings(name: str) -> dict:
    """``same`` | ``capX`` | ``clean`` -> Step-Skip Settings overrides; a clear error otherwise."""
    if name == "same":
        return {"reference_sigma_cap": 1.0}
    if name == "clean":
        return {"reference_noise": "clean"}
    if name.startswith("cap"):
        try:
            cap = float(name[3:])
        except ValueError:
            cap = -1.0
        if 0.0 <= cap <= 1.0:
            return {"reference_sigma_cap": cap}
    raise SystemExit(f"--options {name!r}: use same, clean or capX with 0 <= X <= 1 (e.g. cap0.8)")


def level2_cases(host, seeds):
    spec = shapes.ClipSpec()
    model = q.install_shapes_model(host)
    cases = []
    for seed in seeds:
        ref = q.shapes_reference(seed, spec)
        cases.append((seed, ref, q.put_latent(ref["latent"], f"fastvmt_rs2_{seed}")))

    def run(case, start, steps, overrides):
        seed, ref, name = case
        gen = q.level2_clip(host, model, ref, name, spec=spec, seed=seed, block=2, steps=steps, cfg=4.0,
                            overrides=overrides, denoise=1.0 if start == "t2v" else 0.75)
        return q.score_clip(ref, gen)
    return cases, run


def level3_cases(host, seeds):
    opts = v3.Level3Options(seeds=tuple(seeds))
    model = q.install_shapes_model(host, opts.model)
    opts = replace(opts, block=v3.model_blocks(opts.model) // 2)
    cases = []
    for seed in seeds:
        ref = v3.reference(seed, opts.spec)
        cases.append((seed, ref, q.put_latent(ref["latent"], f"fastvmt_rs3_{seed}")))

    def run(case, start, steps, overrides):
        seed, ref, name = case
        gen = v3.generate(host, model, ref, name, start, seed, replace(opts, steps=steps), overrides)
        return v3.score(ref, gen, opts.frame_scale)
    return cases, run


def measure(host, level: str, starts, steps: int, seeds, options) -> list:
    cases, run = (level2_cases if level == "2" else level3_cases)(host, seeds)
    rows = []
    for start in starts:
        for case in cases:
            for name in ("no transfer",) + tuple(options):
                over = q.CONFIGS["no transfer"] if name == "no transfer" else option_settings(name)
                t0 = time.perf_counter()
                m = run(case, start, steps, over)
                rows.append({"level": level, "start": start, "steps": steps, "option": name, "seed": case[0],
                             "fidelity": m["fidelity"], "seconds": time.perf_counter() - t0,
                             **{k: m[k] for k in ("camera_cos", "shape_cos", "step_cos") if k in m}})
                print(f"  {start} seed {case[0]} {name}: fidelity {m['fidelity']:.3f}", flush=True)
    return rows


def summarise(rows: list) -> list:
    base = {(r["start"], r["seed"]): r["fidelity"] for r in rows if r["option"] == "no transfer"}
    out = []
    for key in dict.fromkeys((r["level"], r["start"], r["steps"], r["option"]) for r in rows):
        sel = [r for r in rows if (r["level"], r["start"], r["steps"], r["option"]) == key]
        d = v3.paired({r["seed"]: r["fidelity"] for r in sel}, {s: v for (st, s), v in base.items() if st == key[1]})
        vals = [r["fidelity"] for r in sel]
        out.append({"level": key[0], "start": key[1], "steps": key[2], "option": key[3], "n": len(sel),
                    "fidelity": sum(vals) / len(vals), "vs_no_transfer": d})
    return out


def format_table(summary: list) -> str:
    out = ["| level | start | steps | reference read | motion fidelity (paper's form) | vs no transfer (seeds > 0) |",
           "|---|---|---|---|---|---|"]
    for r in summary:
        d = r["vs_no_transfer"]
        diff = "-" if r["option"] == "no transfer" else f"{d['mean']:+.3f} +- {d['std']:.3f} ({d['positive']}/{d['n']})"
        out.append(f"| {r['level']} | {r['start']} | {r['steps']} | {r['option']} | {r['fidelity']:.3f} | {diff} |")
    return "\n".join(out)


def main(argv=None, host=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reference_sigma", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--level", choices=sorted(LEVEL_STEPS), default="3")
    p.add_argument("--starts", default="t2v,v2v")
    p.add_argument("--steps", type=int, default=None, help="euler steps (default: the level's, 20 or 12)")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--options", default="same,cap0.8,clean")
    p.add_argument("--json")
    args = p.parse_args(argv)
    starts = tuple(s.strip() for s in args.starts.split(",") if s.strip())
    if not starts or any(s not in v3.STARTS for s in starts):
        raise SystemExit(f"--starts {args.starts!r}: a comma list of {', '.join(v3.STARTS)}")
    options = tuple(o.strip() for o in args.options.split(",") if o.strip())
    for o in options:
        option_settings(o)
    if host is None:
        import comfy_host
        host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-refsigma-"))
        host.require_pack()
    steps = args.steps or LEVEL_STEPS[args.level]
    rows = measure(host, args.level, starts, steps, list(range(args.seeds)), options)
    res = {"machine": machine_line("cpu"), "runs": rows, "summary": summarise(rows)}
    print(format_table(res["summary"]))
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
