"""Which outer denoising steps get latent guidance: the first ``fraction`` of them."""

from __future__ import annotations

import math


def guided_step_count(num_steps: int, fraction: float = 0.2) -> int:
    """Number of leading guided steps: round(num_steps * fraction), at least 1 when fraction > 0.

    50 steps at 0.2 -> 10 (the released code's first 10 of 50); 20 -> 4; 3 -> 1.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if num_steps == 0 or fraction == 0.0:
        return 0
    # The small epsilon keeps 0.2 * 50 (= 10.000000000000002 in floats) at 10.
    return min(num_steps, max(1, math.floor(num_steps * fraction + 0.5 - 1e-9)))


def guided_steps(num_steps: int, fraction: float = 0.2) -> list[int]:
    """Indices of the guided outer steps (always a prefix of range(num_steps))."""
    return list(range(guided_step_count(num_steps, fraction)))
