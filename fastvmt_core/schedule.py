"""Which denoising steps get latent guidance, and at which noise level the reference is read.

The guided range is a share of the *denoising process*, not of one sampler call, so a
run split over several calls (KSamplerAdvanced halves, Wan 2.2's two experts) guides
the same steps as the run done in one call. Positions in the process are "percents"
as ComfyUI uses them for conditioning and patch ranges: 0 at full noise, 1 at the
clean image, in the model's (unshifted) timestep units. On the uniform-in-timestep
schedulers (simple, normal, sgm_uniform) a step's share of the process is its share
of the steps, so 50 steps at 0.2 guide the first 10, like the released code.
"""

from __future__ import annotations

from typing import Sequence

# Midpoints that sit exactly on the range's end (e.g. 5 steps at 0.3) count as inside.
_TIE = 1e-6


def guided_end_percent(start_percent: float, fraction: float) -> float:
    """End of the guided range: the first ``fraction`` of the process from ``start_percent``.

    A run that starts from full noise starts at 0; a partial denoise (img2img / v2v with
    denoise < 1) starts where its noise was added, and the fraction is of what remains.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if not 0.0 <= start_percent <= 1.0:
        raise ValueError(f"start_percent must be in [0, 1], got {start_percent}")
    return start_percent + fraction * (1.0 - start_percent)


def guided_prefix(step_percents: Sequence[float], end_percent: float) -> int:
    """Number of leading steps that are guided.

    ``step_percents`` holds the process position of each sigma of a sampler call (one
    more entry than steps). A step is guided when its midpoint lies inside
    [0, end_percent]: on a uniform schedule of N steps that is round(N * fraction)
    steps (halves rounded up), so 50 -> 10, 20 -> 4, 6 -> 1, 4 -> 1 at 0.2, while a
    2-step run (each step half the process) guides none.
    """
    if end_percent <= 0.0:
        return 0
    n = 0
    for a, b in zip(step_percents[:-1], step_percents[1:]):
        if (a + b) / 2.0 > end_percent + _TIE:
            break
        n += 1
    return n


def uniform_percents(num_steps: int) -> list[float]:
    """Step positions of a uniform-in-timestep schedule of ``num_steps`` steps from full noise."""
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    return [i / num_steps for i in range(num_steps + 1)] if num_steps else [0.0]


def reference_sigma(sigma: float, cap: float) -> float:
    """Noise level the reference is re-noised to at a guided step of noise level ``sigma``.

    Capped so the reference is never (near) pure noise: a 4-step distilled schedule
    guides at sigma 1.0, where a re-noised reference would carry no motion at all.
    README "Few-step schedules" has the measurement behind the default cap.
    """
    return min(float(sigma), float(cap))
