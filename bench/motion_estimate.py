"""Model-free motion estimates for the quality benchmark (plain numpy).

``block_motion`` reads the motion of a multi-channel clip such as a latent by block
matching (it lives in ``fastvmt_core.latent_motion``, where the motion controls read the
reference's own camera motion with it); ``displacement_agreement`` compares two
displacement fields.
"""

from __future__ import annotations

import numpy as np

from fastvmt_core.latent_motion import block_motion  # noqa: F401  (re-exported for the benchmarks)


def displacement_agreement(a, b, still_px: float = 0.2) -> float:
    """Mean cosine similarity of two displacement fields of one shape (``[..., 2]``), each
    vector compared as (dx, dy, still_px) as in ``fastvmt_core.fidelity.tracklet_correlation``: 1 for the
    same motion, about 0 for unrelated motion, near -1 for opposite motion."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1] != 2:
        raise ValueError(f"displacement fields must have one shape [..., 2], got {a.shape} and {b.shape}")

    def unit(d):
        v = np.concatenate([d, np.full(d.shape[:-1] + (1,), float(still_px))], axis=-1)
        return v / np.linalg.norm(v, axis=-1, keepdims=True)
    return float((unit(a) * unit(b)).sum(-1).mean())
