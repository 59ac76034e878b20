"""The fixed noise the reference is re-noised with, never the generation's own.

The reference's noise is drawn as ComfyUI draws a run's noise (and the released code its
reference noise): ``torch.randn(shape, generator=manual_seed(reference_seed))``. When the
sampler's seed is the same number, that draw would give the reference the generation's own
noise, and a guided step would compare two latents that share every noise entry (their flows
then agree for reasons that have nothing to do with motion). The draw is checked against the
generation's noise, and where it shares it, the next draw of the same stream is used.
"""

from __future__ import annotations

import torch

# Correlation above which two noise tensors count as the same draw (independent draws of a
# few thousand entries or more sit near 0; a prefix of the same stream near 1).
SHARED_CORRELATION = 0.5


def reference_noise(shape, seed: int, avoid: torch.Tensor | None = None) -> torch.Tensor:
    """Unit Gaussian noise ``shape`` (float32, CPU) from ``seed``, not shared with ``avoid``
    (the generation's noise, ``[B, ...]``) or any of its batch entries."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    while True:
        noise = torch.randn(tuple(shape), generator=gen, dtype=torch.float32)
        if not shares_noise(noise, avoid):
            return noise


def shares_noise(noise: torch.Tensor, avoid: torch.Tensor | None) -> bool:
    """Whether ``noise`` is (nearly) ``avoid``, or one of its batch entries, entry by entry:
    a batch drawn from one seed starts with the values a single draw from it has."""
    if avoid is None:
        return False
    other = avoid.detach().to("cpu", torch.float32)
    entries = [other] + ([other[i:i + 1] for i in range(other.shape[0])] if other.ndim == noise.ndim else [])
    a = noise.flatten()
    for e in entries:
        b = e.flatten()[:a.numel()]
        if b.numel() == a.numel() and _correlation(a, b) > SHARED_CORRELATION:
            return True
    return False


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float(torch.equal(a, b))
