"""The fixed noise the reference is re-noised with: a stream of its own.

ComfyUI draws a run's noise as ``torch.randn(shape, generator=manual_seed(seed))``. Drawn
the same way, ``reference_seed == seed`` would give the reference the generation's own
noise, and a guided step would compare two latents that share every noise entry (the
flows then agree for reasons that have nothing to do with motion). The reference's draw
starts one value into its seed's stream, and is checked against the generation's noise.
"""

from __future__ import annotations

import torch


def reference_noise(shape, seed: int, avoid: torch.Tensor | None = None) -> torch.Tensor:
    """Unit Gaussian noise ``shape`` (float32, CPU) from ``seed``, never equal to ``avoid``
    (the generation's noise, ``[B, ...]``) or to any of its batch entries."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    n = 1
    for d in shape:
        n *= int(d)
    while True:
        # randn(n + 1)[1:] is not a prefix of any manual_seed stream's randn(n): a different draw.
        noise = torch.randn(n + 1, generator=gen, dtype=torch.float32)[1:].reshape(tuple(shape))
        if not _shares_noise(noise, avoid):
            return noise


def _shares_noise(noise: torch.Tensor, avoid: torch.Tensor | None) -> bool:
    if avoid is None:
        return False
    other = avoid.detach().to("cpu", torch.float32)
    entries = [other] + ([other[i:i + 1] for i in range(other.shape[0])] if other.ndim == noise.ndim else [])
    return any(e.shape == noise.shape and torch.equal(e, noise) for e in entries)
