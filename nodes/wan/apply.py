"""The sampler hook: ``apply_fastvmt`` puts ``fastvmt_sampler_wrapper`` (a SAMPLER_SAMPLE
wrapper) on a clone of the model. For one run, the wrapper swaps the k-diffusion sampler
function for ``guided_sampling``; the stock KSampler, KSamplerAdvanced,
SamplerCustomAdvanced and our Guidance Sampler node all go through it."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time

from fastvmt_core import FastVMTSettings
from fastvmt_core import motion_controls as controls_core  # strength, transfer, regions
from ..motion import MotionReference
from .checks import check_flow_definition, check_ksampler, check_motion_matches, resolve_settings
from .comfy_compat import add_sampler_wrapper, continue_sampler_chain, with_sampler_function
from .context_windows import check_guided_windows, windows_text
from .geometry import wan_geometry
from .guided_step import GuidanceContext, guide_latent
from .image_to_video import generation_held, image_to_video_text
from .memory_plan import plan_memory, restore_after_guidance
from .qk_capture import QKPass
from .reference import prepare_reference
from .sampler import Progress, guided_range, guided_sampling
from .summary import run_summary, unguided_summary

log = logging.getLogger("FastVMT")


def apply_fastvmt(model_patcher, motion: MotionReference, settings: FastVMTSettings | None, *,
                  report: dict | None = None, masks=(None, None)):
    """A clone of ``model_patcher`` whose sampling runs FastVMT guidance; the input is untouched.
    ``masks``: the optional (reference_mask, generation_mask) of the motion controls."""
    resolved = resolve_settings(motion, settings)
    # Channels and block index now; the latent size is checked once the sampled latent is known.
    geometry = wan_geometry(model_patcher)
    check_motion_matches(motion, geometry, motion.latent.shape)
    # Masks fitted to the reference's (= the generation's) token grid, before sampling.
    controls = controls_core.build_controls(resolved, *masks, motion.latent, geometry.patch_size)
    check_flow_definition(resolved, geometry, motion.latent.shape, controls)
    clone = model_patcher.clone()
    if resolved.guided:
        add_sampler_wrapper(clone, functools.partial(fastvmt_sampler_wrapper, motion=motion, settings=resolved,
                                                     report=report, controls=controls))
    return clone, resolved


def fastvmt_sampler_wrapper(executor, guider, sigmas, extra_args, callback, noise, latent_image=None,
                            denoise_mask=None, disable_pbar=False, *args, motion: MotionReference,
                            settings: FastVMTSettings, report: dict | None = None, controls=None, **kwargs):
    """KSAMPLER.sample's arguments, as the SAMPLER_SAMPLE chain passes them (the same eight in
    0.3.64 and v0.38); ``args`` / ``kwargs``: whatever a later ComfyUI adds (v0.38 added
    ``latent_shapes=`` one level up, to OUTER_SAMPLE and inner_sample), handed on unchanged."""
    plan = guided_range(guider.inner_model.model_sampling, sigmas, noise, settings.guided_fraction)
    if plan.n_guided == 0:
        summary = unguided_summary(settings.mode, plan)
        log.info("%s", summary["text"])
        if report is not None:
            report.update(summary)
        return executor(guider, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar,
                        *args, **kwargs)
    check_ksampler(executor.class_obj)
    geometry = wan_geometry(guider.model_patcher)
    check_motion_matches(motion, geometry, noise.shape)
    pass_shape = _checked_pass_shape(guider, sigmas[:plan.n_guided], noise.shape, extra_args, settings, geometry,
                                     controls)
    reference = prepare_reference(guider, motion, geometry, settings, noise, latent_image, denoise_mask, extra_args,
                                  controls)
    gen_held = generation_held(guider, sigmas, noise, latent_image, denoise_mask, extra_args["model_options"])
    memory = plan_memory(guider.model_patcher, pass_shape, settings)
    log.info("FastVMT: %s", memory.describe())
    progress = Progress(callback, plan.n_steps, plan.n_guided, settings.inner_steps)
    gen_pass = QKPass(guider.inner_model, guider.conds["positive"], extra_args["model_options"],
                      settings.motion_block, settings.exit_block, memory.kept_blocks, settings.flow_definition)
    ctx = GuidanceContext(gen_pass=gen_pass, reference=reference, settings=settings, progress=progress.inner_step,
                          gen_held=gen_held)
    sampler = executor.class_obj
    guided = with_sampler_function(sampler, functools.partial(
        guided_sampling, inner=sampler.sampler_function, n_guided=plan.n_guided,
        guide=lambda x, sigma, k: guide_latent(ctx, x, sigma, k),
        after_guidance=lambda: restore_after_guidance(guider.model_patcher, memory)))
    start = time.perf_counter()
    try:
        out = continue_sampler_chain(executor, guided, guider, sigmas, extra_args,
                                     progress.outer if callback is not None else None, noise, latent_image,
                                     denoise_mask, disable_pbar, *args, **kwargs)
    finally:
        summary = run_summary(ctx, plan, time.perf_counter() - start)
        summary["memory"] = dataclasses.asdict(memory)
        summary["text"] += f"\n  memory: {memory.describe()}"
        if windows_text(ctx.step_log):
            summary["text"] += f"\n  {windows_text(ctx.step_log)}"
        image_text = image_to_video_text(geometry, reference.qk_pass.conds, reference.held, gen_held)
        if image_text:
            summary["text"] += f"\n  {image_text}"
        lines, summary["controls"] = controls_core.controls_summary(controls, ctx.step_log)
        summary["text"] += "".join(f"\n  {line}" for line in lines)
        if report is not None:
            report.update(summary)
    log.info("%s", summary["text"])
    return out


def _checked_pass_shape(guider, guided_sigmas, latent_shape, extra_args, settings, geometry, controls):
    """The latent shape one gradient pass sees: a context window's, when the model has
    context windows (checked at every guided sigma, before any work), else the whole latent."""
    lengths = check_guided_windows(extra_args["model_options"], guider.inner_model, guider.conds["positive"],
                                   latent_shape, guided_sigmas, settings)
    shapes = [(*latent_shape[:2], n, *latent_shape[3:]) for n in lengths] or [tuple(latent_shape)]
    for shape in shapes:   # flow_definition 'released' needs each window's token grid to tile
        check_flow_definition(settings, geometry, shape, controls)
    return max(shapes, key=lambda sh: sh[2])
