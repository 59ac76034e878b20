"""GPU benchmark of the pack at paper scale, in one command within a time budget.

    python -m bench.gpu [--budget-s 480] [--json out/gpu.json] [--log out/gpu.log] [--parts a,b] [--toy]

Runs the pack through the repo's in-process ComfyUI host (``comfy_host``) and the
benchmark graphs of ``bench.sampling`` (UNETLoader, stand-in conditioning, Extract
Motion, Step-Skip Settings, Guidance Sampler or the stock KSampler) on random-weight
models written by the host's tiny-model factory at the real Wan 2.1 layouts,
832x480x81 (latent 16 x 21 x 60 x 104), cfg 6, euler/simple, motion block 14. Parts:

  per_step    plain and six guidance configurations, two guided steps each (after a
              warm-up), with peak CUDA memory per row. The 50-step totals are derived,
              not measured: 50 plain steps + 10 x the mean guided step.
  zero_lr     3 steps, all guided, learning rate 0, against plain sampling: bit-exact?
  end_to_end  10 steps with the default 2 guided against 10 plain steps.
  kernels     the flow kernels (sliding window, global with the same span, the same
              span through scaled_dot_product_attention), forward + backward, 480p and 720p.
  cards       smaller cards simulated in subprocesses (bench/gpu_cards.py): 1.3B on
              8 GiB, 14B fp8 on 24 and 16 GiB, one guided step each.

A part (or table row, or card) that does not fit in what is left of ``--budget-s`` is
skipped with a line saying so. The JSON and the log are rewritten after every
measurement. ``--toy`` shrinks the models and the latent so the whole command runs in
one to two minutes on a 2-core CPU (the test suite runs it; with a GPU it rehearses the GPU
path). Without ``--toy`` it needs a CUDA device. On a GPU machine without ComfyUI,
stage what it needs with ``bench/gpu_stage.sh`` (see docs/benchmarks.md, "On a GPU").
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench.gpu_common import REPO, Recorder, boot_host, commit, layouts, make_graph, peak_kind, run_timed, \
    write_model
from bench import gpu_cards

PARTS = ("per_step", "zero_lr", "end_to_end", "kernels", "cards")
# Fixed cost guesses (s) before anything is measured: GPU at full size (from the 2026-12-04
# H200 run) and a loaded 2-core CPU at toy size.
ESTIMATE = {
    False: {"boot": 60, "per_step": 40, "zero_lr": 35, "end_to_end": 40, "kernels": 15, "row": 12},
    True: {"boot": 20, "per_step": 4, "zero_lr": 4, "end_to_end": 6, "kernels": 3, "row": 2},
}
# row, Step-Skip overrides (guided_fraction 1 added), cost relative to the FastVMT row
CONFIGS = [
    ("FastVMT", {}, 1.0),
    ("FastVMT, recomputed activations", {"keep_activations": "never"}, 1.3),
    ("no skip (interval 1)", {"interval": 1}, 2.3),
    ("released-code structure (exit after block {released})", {"exit_block": None}, 1.2),
    ("no early exit (whole DiT)", {"exit_block": 999}, 1.4),
    ("full AMF (global flow, interval 1, whole DiT)", {"mode": "AMF", "exit_block": 999}, 3.0),
]
DERIVED = "derived, not measured: 50 plain steps + 10 x the mean guided step (10 of 50 steps guided)"
NO_CUDA = ("bench.gpu: no CUDA device (torch.cuda.is_available() is False). Run it on a GPU machine, "
           "or pass --toy for the toy-size run on the CPU.")


class Budget:
    def __init__(self, total_s: float):
        self.total_s, self.t0 = total_s, time.monotonic()

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.t0)

    def skip_reason(self, need: float) -> str:
        return f"needs about {need:.0f}s, {max(self.left(), 0):.0f}s left of --budget-s {self.total_s:g}"

    def allows(self, what: str, need: float, rec: Recorder) -> bool:
        if self.left() >= need:
            return True
        rec.log(f"skip {what}: {self.skip_reason(need)}")
        return False


class Context:
    """What the parts share: the host (booted on first use), the 1.3B model, the clock."""

    def __init__(self, args, rec: Recorder, budget: Budget, cuda: bool):
        self.args, self.rec, self.budget, self.cuda = args, rec, budget, cuda
        self.est = ESTIMATE[args.toy]
        self.layout = layouts(args.toy)["1.3b"]
        self.host = self.model = self.boot_s = None
        self.seed = 100

    def need(self, part: str) -> float:
        return self.est[part] + (self.est["boot"] if self.host is None else 0)

    def boot(self):
        if self.host is None:
            t0 = time.perf_counter()
            self.host = boot_host(Path(self.args.work) / "base", self.cuda)
            self.boot_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            self.model = write_model(self.host, self.layout, self.args.toy)
            self.rec.log(f"ComfyUI {self.host.version} booted in {self.boot_s:.1f}s; wrote {self.model} in "
                         f"{time.perf_counter() - t1:.1f}s")
            self.rec.data["setup"].update(comfyui=self.host.version, comfyui_path=str(self.host.comfyui_path))
        return self.host

    def run(self, steps: int, overrides: dict | None, seed: int | None = None, want_latent: bool = False):
        if seed is None:
            self.seed += 1  # a new seed: the sampler is not served from ComfyUI's cache
            seed = self.seed
        g = make_graph(self.model, self.layout, steps=steps, seed=seed, overrides=overrides)
        return run_timed(self.boot(), g, self.cuda, want_latent=want_latent)


def part_per_step(ctx: Context) -> dict:
    rec, out = ctx.rec, {"derived_note": DERIVED, "peak_kind": peak_kind(ctx.cuda), "guided_steps_per_row": 2}
    ctx.boot()
    ctx.run(1, None)  # loads the model
    one, three = ctx.run(1, None), ctx.run(3, None)
    step = (three.wall_s - one.wall_s) / 2
    how = "(3-step run - 1-step run) / 2"
    if step <= 0:  # timer noise at toy size
        step, how = three.wall_s / 3, "3-step run / 3"
    plain = {"config": "plain (one step, 2 passes batched)", "step_s": step, "step_from": how,
             "peak_gib": three.peak_gib, "derived_50_steps_s": 50 * step, "x_plain": 1.0}
    out["plain"], out["rows"] = plain, [plain]
    rec.log(f"plain: {step:.3f}s per step, peak {three.peak_gib:.2f} GiB")
    ctx.run(1, {"guided_fraction": 1.0})  # warm-up of the guided path
    fast_wall = None
    for label, overrides, weight in CONFIGS:
        label = label.format(released=ctx.layout.released_exit)
        ov = {k: (ctx.layout.released_exit if v is None else v) for k, v in overrides.items()}
        need = (fast_wall or ctx.est["row"]) * weight
        if not ctx.budget.allows(f"row {label}", need, rec):
            out["rows"].append({"config": label, "skipped": ctx.budget.skip_reason(need)})
            rec.put("per_step", out)
            continue
        try:
            r = ctx.run(2, {**ov, "guided_fraction": 1.0})
        except Exception as e:  # noqa: BLE001  (an out-of-memory row leaves the others to measure)
            out["rows"].append({"config": label, "overrides": ov, "error": f"{type(e).__name__}: {e}"[:2000]})
            rec.put("per_step", out)
            rec.log(f"{label}: failed: {out['rows'][-1]['error'][:500]}")
            continue
        fast_wall = fast_wall or r.wall_s
        row = _guided_row(label, ov, r, step)
        out["rows"].append(row)
        rec.put("per_step", out)
        rec.log(f"{label}: guided step {row['guided_step_s']:.3f}s, {row['gradient_passes_per_step']} gradient "
                f"passes, peak {row['peak_gib']:.2f} GiB, derived 50 steps {row['derived_50_steps_s']:.1f}s")
    fast = next((r for r in out["rows"] if r["config"] == "FastVMT" and "derived_50_steps_s" in r), None)
    for r in out["rows"]:
        if "derived_50_steps_s" in r:
            r["x_plain"] = r["derived_50_steps_s"] / plain["derived_50_steps_s"]
            r["x_fastvmt"] = r["derived_50_steps_s"] / fast["derived_50_steps_s"] if fast and r is not plain else None
    return out


def _guided_row(label: str, overrides: dict, r, plain_step: float) -> dict:
    steps = r.report.get("steps", [])
    seconds = [e["seconds"] for e in steps]
    guided = sum(seconds) / len(seconds)
    memory = r.report.get("memory") or {}
    return {"config": label, "overrides": overrides, "wall_s": r.wall_s, "guided_steps_s": seconds,
            "guided_step_s": guided, "gradient_passes_per_step": steps[0]["gradient_evaluations"],
            "block_evaluations": r.report.get("block_evaluations"), "dit_passes": r.report.get("dit_passes"),
            "kept_blocks": memory.get("kept_blocks"), "gradient_blocks": memory.get("gradient_blocks"),
            "weight_copies": r.report.get("weight_copies"), "memory_plan": memory, "peak_gib": r.peak_gib,
            "derived_50_steps_s": 50 * plain_step + 10 * guided}


def part_zero_lr(ctx: Context) -> dict:
    import torch
    ctx.boot()
    seed = 5
    plain = ctx.run(3, None, seed, want_latent=True)
    zero = ctx.run(3, {"lr_start": 0.0, "lr_end": 0.0, "guided_fraction": 1.0}, seed, want_latent=True)
    guided = ctx.run(3, {"guided_fraction": 1.0}, seed, want_latent=True)
    out = {"steps": 3, "guided_steps": len(zero.report.get("steps", [])),
           "equal": bool(torch.equal(zero.latent, plain.latent)),
           "max_abs_diff": float((zero.latent - plain.latent).abs().max()),
           "guided_max_abs_diff": float((guided.latent - plain.latent).abs().max()),
           "plain_max_abs": float(plain.latent.abs().max())}
    ctx.rec.log(f"zero learning rate == plain: {out['equal']} (max abs diff {out['max_abs_diff']:.3g}); "
                f"with the default rate the latent moves by up to {out['guided_max_abs_diff']:.3g}")
    return out


def part_end_to_end(ctx: Context) -> dict:
    ctx.boot()
    plain = ctx.run(10, None, 11)
    fast = ctx.run(10, {}, 11)
    out = {"steps": 10, "guided_steps": len(fast.report.get("steps", [])), "plain_s": plain.wall_s,
           "fastvmt_s": fast.wall_s, "ratio": fast.wall_s / plain.wall_s,
           "peak_gib": {"plain": plain.peak_gib, "fastvmt": fast.peak_gib}}
    ctx.rec.log(f"end to end, 10 steps ({out['guided_steps']} guided): plain {plain.wall_s:.2f}s, FastVMT "
                f"{fast.wall_s:.2f}s: {out['ratio']:.2f}x")
    return out


def part_kernels(ctx: Context) -> dict:
    from bench import gpu_kernels
    return gpu_kernels.run(ctx.args.toy, ctx.cuda, ctx.rec)


def part_cards(ctx: Context, cards) -> dict:
    if ctx.host is not None:  # free this process's GPU memory for the card subprocesses
        ctx.host.reset(unload_models=True)
        import torch
        if ctx.cuda:
            torch.cuda.empty_cache()
    return gpu_cards.run_cards(ctx.args, ctx.rec, ctx.budget, cards, ctx.est["boot"])


def child_env() -> dict:
    import comfy_host
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    found = comfy_host.find_comfyui()
    if found is not None:
        env["COMFYUI_PATH"] = str(found)
    return env


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=480, help="seconds for the whole run (default 480)")
    p.add_argument("--json", help="write the results here (rewritten after every measurement)")
    p.add_argument("--log", help="write the log here too (default: beside --json, .log)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma list of: " + ", ".join(PARTS))
    p.add_argument("--toy", action="store_true", help="toy sizes (1-2 min on 2 CPU cores; on the GPU if any)")
    p.add_argument("--work", help="scratch folder for model files (default: a temporary one, removed at the end)")
    hidden = argparse.SUPPRESS  # the card and writer subprocesses of this command
    p.add_argument("--card-name", help=hidden)
    p.add_argument("--card-layout", choices=("1.3b", "14b"), help=hidden)
    p.add_argument("--card-gib", type=float, help=hidden)
    p.add_argument("--card-json", help=hidden)
    p.add_argument("--write-model", choices=("14b",), help=hidden)
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = [x for x in args.parts if x not in PARTS]
    if bad:
        p.error(f"--parts: unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    if not args.budget_s > 0:
        p.error(f"--budget-s must be above 0 seconds, got {args.budget_s:g}")
    if args.log is None and args.json:
        args.log = str(Path(args.json).with_suffix(".log"))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.card_gib is not None:
        return gpu_cards.card_main(args)
    if args.write_model:
        return gpu_cards.writer_main(args)
    import torch
    cuda = torch.cuda.is_available()
    if not args.toy and not cuda:
        print(NO_CUDA, file=sys.stderr)
        return 2
    own_work = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="bench-gpu-")
    rec = Recorder(args.json, args.log)
    budget = Budget(args.budget_s)
    layout = layouts(args.toy)["1.3b"]
    rec.put("command", "python -m bench.gpu " + " ".join(sys.argv[1:] if argv is None else argv))
    rec.put("started", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    rec.put("commit", commit())
    rec.put("toy", args.toy)
    rec.put("budget_s", args.budget_s)
    rec.put("setup", {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
                      "layout": layout.label, "latent": [16, *layout.latent], "video": layout.video(),
                      "text_tokens": layout.text_tokens, "cfg": 6.0, "sampler": "euler/simple",
                      "motion_block": layout.motion_block})
    rec.log(f"bench.gpu on {rec.data['setup']['device']}, torch {torch.__version__}, budget {args.budget_s:g}s, "
            f"parts {', '.join(args.parts)}{' (toy sizes)' if args.toy else ''}")
    ctx = Context(args, rec, budget, cuda)
    cards, failed = None, False
    try:
        first_card = ESTIMATE[args.toy]["boot"] + (gpu_cards.TOY_CARD_S if args.toy else gpu_cards.CARDS[0][3])
        if "cards" in args.parts and budget.left() >= first_card:  # boot them while the other parts run
            cards = gpu_cards.Cards(args, child_env(), rec)
        for part in args.parts:
            failed |= _run_part(ctx, part, cards)
    finally:
        if cards is not None:
            cards.stop()
        if own_work:
            shutil.rmtree(args.work, ignore_errors=True)
    rec.put("elapsed_s", time.monotonic() - budget.t0)
    rec.log(f"done in {rec.data['elapsed_s']:.0f}s" + (f"; results in {args.json}" if args.json else ""))
    return 1 if failed else 0


def _run_part(ctx: Context, part: str, cards) -> bool:
    """Run one part into the JSON; True when it failed."""
    rec, budget = ctx.rec, ctx.budget
    if part != "cards":  # the cards decide one card at a time
        need = ctx.need(part) if part != "kernels" else ctx.est["kernels"]
        if not budget.allows(f"part {part}", need, rec):
            rec.put(part, {"skipped": budget.skip_reason(need)})
            return False
    rec.log(f"== {part} ({max(budget.left(), 0):.0f}s left)")
    try:
        result = part_cards(ctx, cards) if part == "cards" else PART_FUNCS[part](ctx)
    except Exception as e:  # noqa: BLE001  (the other parts still run; the JSON says what failed)
        traceback.print_exc()
        rec.log(f"part {part} failed: {type(e).__name__}: {e}"[:2000])
        rec.put(part, {**(rec.data.get(part) or {}), "error": f"{type(e).__name__}: {e}"[:3000]})  # keeps rows
        return True
    rec.put(part, result)
    return False


PART_FUNCS = {"per_step": part_per_step, "zero_lr": part_zero_lr, "end_to_end": part_end_to_end,
              "kernels": part_kernels}

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is written: skip the seconds of tearing down torch and ComfyUI
