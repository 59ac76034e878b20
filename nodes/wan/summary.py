"""What a guided run did, as text for the log / node and as numbers for the report."""

from __future__ import annotations

import dataclasses

from fastvmt_core import PURE_NOISE_SIGMA, reference_carries_motion
from .guided_step import GuidanceContext
from .sampler import GuidedRange


def run_summary(ctx: GuidanceContext, plan: GuidedRange, seconds: float) -> dict:
    s = ctx.settings
    log_ = ctx.step_log
    guidance_s = sum(e["seconds"] for e in log_)
    lines = [f"FastVMT {s.mode}: guided {len(log_)}/{plan.n_guided} of {plan.n_steps} steps, "
             f"{s.inner_steps} inner steps, gradient every {s.effective_interval} -> "
             f"{sum(e['gradient_evaluations'] for e in log_)} gradient passes, "
             f"{ctx.counter.passes} DiT passes ({ctx.counter.blocks} block evaluations, motion block "
             f"{s.motion_block})",
             f"  {plan.describe()}",
             f"  guidance {guidance_s:.1f}s of {seconds:.1f}s sampling; {_copies_text(ctx.counter)}"]
    lines += [_step_line(e) for e in log_]
    lines += _no_motion_lines(log_)
    return {"text": "\n".join(lines), "steps": list(log_), "block_evaluations": ctx.counter.blocks,
            "dit_passes": ctx.counter.passes, "weight_copies": ctx.counter.weight_copies,
            "weight_copy_bytes": ctx.counter.weight_copy_bytes, "guidance_seconds": guidance_s, "sampling_seconds": seconds,
            "first_losses": [e["losses"][0] for e in log_ if e["losses"]],
            "last_losses": [e["losses"][-1] for e in log_ if e["losses"]],
            "n_guided": plan.n_guided, "range": dataclasses.asdict(plan),
            "pure_noise_reference_steps": [e["step"] for e in log_ if not reference_carries_motion(e["reference_sigma"])]}


def _no_motion_lines(log_: list) -> list:
    """Say so when guided steps read a reference that is pure noise (no motion in it)."""
    blind = [e["step"] for e in log_ if not reference_carries_motion(e["reference_sigma"])]
    if not blind:
        return []
    which = "none of the guided steps" if len(blind) == len(log_) else f"step(s) {', '.join(map(str, blind))}"
    return [f"  NOTE: {which} could carry the reference's motion: the reference was read at sigma >= "
            f"{PURE_NOISE_SIGMA}, where it is pure noise. Guide more of the process (guided_fraction), use more "
            "steps, a lower denoise, or a reference_sigma_cap below 1 (docs/reference_noise.md)."]


def _copies_text(counter) -> str:
    if not counter.weight_copies:
        return "weights read in place (no per-pass copies)"
    return (f"{counter.weight_copies} fp8 weight casts ({counter.weight_copy_bytes / 2**20:.0f} MiB) over "
            f"{counter.passes} passes")


def _step_line(e: dict) -> str:
    losses = ", ".join(f"{v:.4g}" for v in e["losses"])
    return (f"  step {e['step']}: sigma {e['sigma']:.3f} (reference at {e['reference_sigma']:.3f}), "
            f"loss [{losses}], {e['seconds']:.1f}s" + (f" (stopped: {e['stopped']})" if e["stopped"] else "")
            + ("" if reference_carries_motion(e["reference_sigma"]) else " (reference is pure noise)"))


def unguided_summary(mode: str, plan: GuidedRange) -> dict:
    """A call with no step in the guided range: it ran plain sampling."""
    return {"text": f"FastVMT {mode}: {plan.describe()}", "steps": [], "n_guided": 0,
            "range": dataclasses.asdict(plan)}
