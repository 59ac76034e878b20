"""The guided share of a sampler call, and the sampler function that guides it.

``guided_range`` locates the guided share of the whole denoising process in this call's
sigmas (so split calls guide what one call would). ``guided_sampling`` is a k-diffusion
sampler function over plain tensors: before each guided step the latent is optimised,
then the stock sampler takes one step from it, drawing from one noise stream for the
whole call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastvmt_core import guided_end_percent, guided_prefix
from .comfy_compat import default_noise_sampler, euler_step_function, step_family, takes_noise_sampler


def sigma_to_percent(model_sampling, sigma: float) -> float:
    """Position of ``sigma`` in the denoising process (0 = full noise, 1 = clean): the
    inverse of ComfyUI's ``model_sampling.percent_to_sigma``, by bisection, so it holds
    for every model sampling type (Wan's is the shifted flow)."""
    sigma = float(sigma)
    if sigma <= 0.0:
        return 1.0
    if sigma >= float(model_sampling.percent_to_sigma(0.0)):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(48):  # 2^-48: far below the 1/1000 spacing of the model's timesteps
        mid = 0.5 * (lo + hi)
        if float(model_sampling.percent_to_sigma(mid)) > sigma:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class GuidedRange:
    """Where one sampler call sits in the denoising process and which of its steps are guided."""
    start: float        # percent where the process started (0: from full noise)
    end: float          # percent where the guided range ends
    call_from: float    # percent of this call's first sigma
    call_to: float      # percent of its last sigma
    n_steps: int
    n_guided: int

    def describe(self) -> str:
        where = f"this call covers {self.call_from:.0%}-{self.call_to:.0%} of denoising"
        guided = f"the guided range is {self.start:.0%}-{self.end:.0%}"
        if self.n_guided:
            return f"{where}; {guided}: steps 1-{self.n_guided} of its {self.n_steps} are guided"
        return f"{where}; {guided}: no step of this call lies in it, so it ran plain sampling"


def guided_range(model_sampling, sigmas, noise, fraction: float) -> GuidedRange:
    """The guided share of the whole process, located in this call's sigmas.

    A call given zero noise (KSamplerAdvanced with add_noise disabled, DisableNoise)
    continues a run that started from full noise, e.g. the second half of a split or
    Wan 2.2's low-noise expert; any other call starts the process where its noise is
    added (0 for text-to-video, later for a partial denoise).
    """
    percents = [sigma_to_percent(model_sampling, s) for s in sigmas.tolist()]
    start = percents[0] if bool(torch.count_nonzero(noise)) else 0.0
    end = guided_end_percent(start, fraction)
    n_steps = len(percents) - 1
    return GuidedRange(start, end, percents[0], percents[-1], n_steps, guided_prefix(percents, end))


def shared_noise_sampler(sampler_function, x, sigmas, seed):
    """The noise sampler the stock function would build for the whole call, or None.

    Passed to every chunk of a guided run, so chunks continue one noise stream instead of
    each reseeding it: with a zero learning rate the guided run draws exactly the plain
    run's noise.
    """
    if not takes_noise_sampler(sampler_function):
        return None
    return default_noise_sampler(sampler_function, x, sigmas, seed)


def single_step_function(sampler_function):
    """The function that takes the guided steps: the sampler itself, or Euler where it cannot."""
    if step_family(sampler_function) == "no-single-step":
        return euler_step_function()
    return sampler_function


def guided_sampling(model, x, sigmas, extra_args=None, callback=None, disable=None, *, inner, guide,
                    n_guided: int, after_guidance=None, **options):
    """k-diffusion-style sampler: for each of the first ``n_guided`` steps, guide the latent
    and take one step; then ``after_guidance()`` and the stock sampler over the remaining sigmas.

    * One noise stream for the whole call (``shared_noise_sampler``).
    * Multistep samplers restart their history after each guided step and once more
      when the unguided remainder starts; that restart is the only difference from
      plain sampling when the latent is not changed.
    * Samplers that cannot take one step alone take their guided steps with Euler.
    """
    extra_args = {} if extra_args is None else extra_args
    if "noise_sampler" not in options:
        noise_sampler = shared_noise_sampler(inner, x, sigmas, extra_args.get("seed"))
        if noise_sampler is not None:
            options = {**options, "noise_sampler": noise_sampler}
    step = single_step_function(inner)
    step_options = options if step is inner else {}

    def shifted(offset):
        if callback is None:
            return None
        return lambda d: callback({**d, "i": d["i"] + offset})

    for k in range(n_guided):
        x = guide(x, sigmas[k], k)
        x = step(model, x, sigmas[k:k + 2], extra_args=extra_args, callback=shifted(k), disable=True,
                 **step_options)
    if after_guidance is not None:
        after_guidance()
    rest = sigmas[n_guided:]
    if len(rest) > 1:  # one step left: the guided-step function, which can take it alone
        fn, fn_options = (inner, options) if len(rest) > 2 else (step, step_options)
        x = fn(model, x, rest, extra_args=extra_args, callback=shifted(n_guided), disable=disable, **fn_options)
    return x


class Progress:
    """One progress bar for outer and inner steps: ComfyUI's callback sees a larger total."""

    def __init__(self, callback, n_steps, n_guided, inner_steps):
        self.callback, self.n_guided, self.inner = callback, n_guided, inner_steps
        self.total = n_steps + n_guided * inner_steps

    def _position(self, outer_step):
        return outer_step + self.inner * min(outer_step + 1, self.n_guided)

    def outer(self, step, x0, x, total_steps):
        if self.callback is not None:
            self.callback(self._position(step), x0, x, self.total)

    def inner_step(self, outer_step, j, latent):
        if self.callback is not None:
            # The preview shows the latent being optimised (a guidance pass computes no
            # denoised estimate: it stops inside the motion block).
            self.callback(outer_step * (self.inner + 1) + j, latent, latent, self.total)
