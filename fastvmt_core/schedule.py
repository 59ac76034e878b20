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


# Re-noised to this sigma or above, the reference is pure noise to 0.1%: no motion to read.
PURE_NOISE_SIGMA = 0.999


def reference_sigma(sigma: float, cap: float) -> float:
    """Noise level the reference is re-noised to at a guided step of noise level ``sigma``:
    min(sigma, cap). The default cap 1.0 reads it at the generation's own noise level, so
    both flows carry the same noise-level bias (docs/reference_noise.md); a lower cap
    gives few-step schedules that start at sigma 1.0 a reference that still shows motion.
    """
    return min(float(sigma), float(cap))


def reference_carries_motion(reference_sigma: float) -> bool:
    """False where the re-noised reference is pure noise (sigma >= PURE_NOISE_SIGMA): a guided
    step there matches the generation's attention to noise, not to the reference's motion."""
    return float(reference_sigma) < PURE_NOISE_SIGMA
