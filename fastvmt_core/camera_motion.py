"""Camera motion apart from object motion, from a motion flow.

For every frame pair the global motion of the token grid is modelled as an affine
displacement field ``d(p) = M p + t`` (``p`` = (y, x) token position): a pan is ``t``,
a zoom or roll is ``M``. It is fitted to the flow's displacements by iteratively
reweighted least squares with Tukey's biweight, so tokens that move unlike the rest
(moving objects) end with weight 0 and do not pull the fit. What the fit leaves, the
residual, is the object motion.

Everything is batched over frame pairs; there is no loop over tokens. The last
weighted solve carries gradients to the displacements (the weights do not), so a
generated flow's camera motion or residual can be a loss.

Limit: a camera that translates through a scene with depth moves near things faster
than far ones (parallax); no single affine field describes that, so part of such a
camera's motion ends up in the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ITERATIONS = 10
TUKEY_C = 4.685        # Tukey's constant: 95% efficiency on Gaussian residuals
MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation (Gaussian)
MIN_SCALE = 1e-3       # tokens: floor of the residual scale, so an exactly affine field keeps full weight


@dataclass(frozen=True)
class CameraFit:
    """The fitted global motion of each frame pair.

    matrix:      [P, 2, 2], translation: [P, 2]: displacement at token (y, x) is
                 ``matrix @ (y, x) + translation``, (dy, dx) in token units, positions
                 counted from the top-left token.
    field:       [P, H, W, 2] that displacement at every token (carries gradients).
    weights:     [P, H, W] final weight of each token in the fit (robust weight times
                 the prior), detached: about 0 on tokens the fit treats as moving objects.
    """

    matrix: torch.Tensor
    translation: torch.Tensor
    field: torch.Tensor
    weights: torch.Tensor


def _design(h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Centred, scaled coordinates [N, 3] = (y', x', 1) (well conditioned normal equations),
    the centre (y, x) and the scale."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float64),
                            torch.arange(w, device=device, dtype=torch.float64), indexing="ij")
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2], device=device, dtype=torch.float64)
    scale = max(h, w, 2) / 2
    pos = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=-1)
    return torch.cat([(pos - centre) / scale, pos.new_ones(h * w, 1)], dim=-1), centre, scale


def _solve(design: torch.Tensor, disp: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted least squares per pair: design [N, 3], disp [P, N, 2], weights [P, N] -> [P, 3, 2]."""
    normal = torch.einsum("pn,ni,nj->pij", weights, design, design)
    rhs = torch.einsum("pn,ni,pnc->pic", weights, design, disp)
    # A tiny ridge keeps degenerate pairs (a one-row grid, a region on one line) solvable:
    # their unidentified coefficients come out 0 instead of inf.
    ridge = 1e-9 * (normal.diagonal(dim1=-2, dim2=-1).sum(-1) + 1.0)
    normal = normal + ridge[:, None, None] * torch.eye(3, dtype=normal.dtype, device=normal.device)
    return torch.linalg.solve(normal, rhs)


def _masked_median(values: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Median over dim 1 of the counted entries; 0 for a row with none. values [P, N, ...]."""
    mask = counted.reshape(counted.shape + (1,) * (values.ndim - 2))
    med = torch.nanmedian(torch.where(mask, values, torch.nan), dim=1).values
    return torch.nan_to_num(med, nan=0.0)


def _tukey_weights(residual: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Tukey biweight of residual norms [P, N], the scale from their median per pair."""
    sigma = (MAD_TO_SIGMA * _masked_median(residual, counted)).clamp(min=MIN_SCALE)
    u = residual / (TUKEY_C * sigma[:, None])
    return torch.where(u < 1, (1 - u * u) ** 2, torch.zeros_like(u))


def fit_camera(displacement: torch.Tensor, prior: torch.Tensor | None = None,
               iterations: int = ITERATIONS) -> CameraFit:
    """Robust affine fit of each frame pair's displacements [P, H, W, 2] ((dy, dx), tokens).

    ``prior`` [P, H, W] in 0..1 weights the tokens that may show the camera (a region);
    None: all tokens. The fit starts from each pair's median displacement (a pan is then
    right from the start, whatever moves in front of it), then alternates weighted least
    squares and Tukey weights ``iterations`` times. A pair whose robust weights all vanish
    falls back to its prior weights.
    """
    if displacement.ndim != 4 or displacement.shape[-1] != 2:
        raise ValueError(f"displacement must be [pairs, H, W, 2]; got {tuple(displacement.shape)}")
    p, h, w, _ = displacement.shape
    design, centre, scale = _design(h, w, displacement.device)
    disp = displacement.reshape(p, h * w, 2).double()
    base = (torch.ones(p, h * w, dtype=torch.float64, device=displacement.device) if prior is None
            else prior.reshape(p, h * w).to(device=displacement.device, dtype=torch.float64))
    counted = base > 0
    with torch.no_grad():
        d = disp.detach()
        residual = (d - _masked_median(d, counted)[:, None]).norm(dim=-1)
        for _ in range(iterations):
            weights = _robust(base, residual, counted)
            residual = (d - design @ _solve(design, d, weights)).norm(dim=-1)
        weights = _robust(base, residual, counted)
    coef = _solve(design, disp, weights)  # [P, 3, 2]; differentiable in the displacements
    field = (design @ coef).to(displacement.dtype).reshape(p, h, w, 2)
    matrix = coef[:, :2, :].transpose(1, 2) / scale  # rows: (dy, dx); columns: (y, x)
    translation = coef[:, 2, :] - matrix @ centre
    return CameraFit(matrix.to(displacement.dtype), translation.to(displacement.dtype), field,
                     weights.reshape(p, h, w).to(displacement.dtype))


def _robust(base, residual, counted):
    weights = base * _tukey_weights(residual, counted)
    return torch.where(weights.sum(dim=1, keepdim=True) > 0, weights, base)


def decompose(displacement: torch.Tensor, prior: torch.Tensor | None = None) -> tuple[CameraFit, torch.Tensor]:
    """(camera fit, object motion): the residual is the displacement minus the camera's field."""
    fit = fit_camera(displacement, prior)
    return fit, displacement - fit.field


def affine_field(matrix: torch.Tensor, translation: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The displacement field [P, h, w, 2] of ``matrix`` [P, 2, 2] and ``translation`` [P, 2]."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=matrix.dtype, device=matrix.device),
                            torch.arange(w, dtype=matrix.dtype, device=matrix.device), indexing="ij")
    pos = torch.stack([ys, xs], dim=-1)
    return torch.einsum("pij,hwj->phwi", matrix, pos) + translation[:, None, None, :]
