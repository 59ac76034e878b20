"""The motion flow and losses as the authors' released code computes them
(``flow_definition="released"``; github mayuelala/FastVMT at 34a050b,
``diffsynth/pipelines/wan_video.py``). docs/differences.md lists each quirk beside the paper's
definition (``amf.py`` / ``losses.py``):

1. windowed pairs: the displacement is the expected index *inside the window* minus the
   query's index *inside its tile*, not an absolute displacement;
2. every window coordinate is clamped to [l // 2, size - l // 2 - 1], then truncated;
3. the coordinates of every odd (flat) window slot are zeroed before the expectation;
4. frame pairs (i, j) with j = i .. i + span - 1: the self pair is included, with full
   attention over the frame; pair weights ``linspace(1, 0.8, span)`` over offsets 0..span-1;
5. the squared flow error is summed over tokens, weighted, then averaged over pairs;
6. the window ("tracking") loss averages the gathered keys over the head dimension, one
   scalar per window slot, takes the L2 norm over the slots, averages per source frame, then
   over source frames;
8. the window centre is truncated, not rounded (the truncation of quirk 2);
9. head averaging: ``[S, heads, d]`` is read as ``[S / heads, heads, dim]`` before the mean
   (``released_head_mean``), which mixes neighbouring tokens and picks one head per token.

Quirk 7 (bf16 latent and optimizer state, the lr schedule) lives in ``optimize.py``. Logits
are ``q . k / sqrt(D) * tau`` (the released code multiplies by tau; the call passes 1.0).
Computed in float32; the released code runs this under bf16 autocast.
"""

from __future__ import annotations

import math

import torch

from .amf import MotionFlow


def check_released_grid(h: int, w: int, window: int, tile: tuple[int, int]) -> None:
    """The grids the released code can compute, as a clear error instead of its shape error
    (a grid not divisible by the tile) or its negative indices (a window larger than the grid)."""
    th, tw = tile
    if h % th or w % tw:
        raise ValueError(f"flow_definition 'released': the token grid {h}x{w} is not divisible by the tile "
                         f"{th}x{tw} (the released code tiles the grid exactly); choose a video size whose token "
                         f"grid (latent / 2) is a multiple of the tile, change tile, or use flow_definition 'paper'")
    if window % 2 == 0:
        raise ValueError(f"flow_definition 'released': window must be odd (the released window is centred on a "
                         f"token, {window} has no centre); use {window - 1} or {window + 1}")
    if window > h or window > w:
        raise ValueError(f"flow_definition 'released': window {window} is larger than the token grid {h}x{w}; the "
                         f"released code clamps windows into the grid and would index outside it. Use window <= "
                         f"{min(h, w) if min(h, w) % 2 else min(h, w) - 1}, or flow_definition 'paper'")


def released_pairs(num_frames: int, span: int) -> list[tuple[int, int]]:
    """(i, j) for j = i .. i + span - 1, source frame by source frame, as the released loop runs."""
    return [(i, j) for i in range(num_frames) for j in range(i, min(num_frames, i + span))]


def released_head_mean(x: torch.Tensor) -> torch.Tensor:
    """[B, S, heads, d] -> [B, S, d] as the released ``reshape_qk`` averages heads: the flat
    ``[S, heads * d]`` is viewed as ``[S / heads, heads, heads * d]`` and averaged over the middle axis."""
    b, s, n, d = x.shape
    if s % n:
        raise ValueError(f"flow_definition 'released': {s} tokens are not divisible by {n} heads "
                         "(the released head averaging needs it); use flow_definition 'paper'")
    return x.reshape(b, s // n, n, n * d).mean(dim=2).reshape(b, s, d)


def _tile_major_to_grid(disp: torch.Tensor, h: int, w: int, tile: tuple[int, int]) -> torch.Tensor:
    """[P, S, 2] in the released tile-major token order -> [P, H, W, 2] row-major."""
    th, tw = tile
    p = disp.shape[0]
    return disp.reshape(p, h // th, w // tw, th, tw, 2).permute(0, 1, 3, 2, 4, 5).reshape(p, h, w, 2)


def _self_pairs(qf, kf, frames, coords, scale):
    """Full attention of frame i to itself: expected (row, col) minus the token's own, [n, S, 2].
    The expectation is a reduction, as in the released code (a matmul over S terms rounds more)."""
    probs = torch.softmax(torch.bmm(qf[frames], kf[frames].transpose(1, 2)) * scale, dim=-1)
    expected = torch.stack([(probs * coords[:, 0]).sum(-1), (probs * coords[:, 1]).sum(-1)], dim=-1)
    return expected - coords


def _windowed_pairs(qf, kf, src, dst, coords, h, w, window, tile, scale):
    """Pass 1 (tile centres over the frame) and pass 2 (tile queries in their window) for the
    pairs src -> dst: displacement [n, S, 2] (tile-major), slot keys [n, T, window^2].
    ``coords`` [S, 2]: each token's (row, col)."""
    th, tw = tile
    ny, nx, half, dev = h // th, w // tw, window // 2, qf.device
    centre_tok = ((torch.arange(ny, device=dev) * th + th // 2)[:, None] * w
                  + (torch.arange(nx, device=dev) * tw + tw // 2)[None, :]).reshape(-1)
    with torch.no_grad():  # the released code's gather indices carry no gradient either
        a1 = torch.softmax(torch.bmm(qf[src][:, centre_tok], kf[dst].transpose(1, 2)) * scale, dim=-1)
        # A reduction, as the released code sums: a matmul rounds differently, and the truncation
        # below turns a last-bit difference into a whole token.
        centre = torch.stack([(a1 * coords[:, 0]).sum(-1), (a1 * coords[:, 1]).sum(-1)], dim=-1)  # [n, T, 2]
        offs = torch.arange(-half, half + 1, device=dev, dtype=centre.dtype)
        rows = (centre[..., 0, None, None] + offs[:, None]).clamp(half, h - half - 1).long()  # [n, T, l, 1]
        cols = (centre[..., 1, None, None] + offs[None, :]).clamp(half, w - half - 1).long()  # [n, T, 1, l]
        slot_token = (rows * w + cols).reshape(len(src), ny * nx, window * window)  # [n, T, L]
    q_tiles = qf[src].reshape(-1, ny, th, nx, tw, qf.shape[-1]).permute(0, 1, 3, 2, 4, 5)
    q_tiles = q_tiles.reshape(len(src), ny * nx, th * tw, -1)  # [n, T, th*tw, D]
    keys = kf[dst].gather(1, slot_token.reshape(len(src), -1, 1).expand(-1, -1, kf.shape[-1]))
    keys = keys.reshape(*slot_token.shape, kf.shape[-1])  # [n, T, L, D]
    probs = torch.softmax(torch.matmul(q_tiles, keys.transpose(-1, -2)) * scale, dim=-1)  # [n, T, th*tw, L]
    slot = torch.arange(window * window, device=dev)
    keep = (slot % 2 == 0).long()
    slot_pos = torch.stack([slot // window * keep, slot % window * keep], -1).to(qf.dtype)  # [L, 2]
    in_tile = torch.arange(th * tw, device=dev)
    tile_pos = torch.stack([in_tile // tw, in_tile % tw], -1).to(qf.dtype)  # [th*tw, 2]
    disp = (probs @ slot_pos - tile_pos).reshape(len(src), h * w, 2)
    slot_keys = kf[dst].mean(dim=-1).gather(1, slot_token.reshape(len(src), -1)).reshape(slot_token.shape)
    return disp, slot_keys


def released_flow(q: torch.Tensor, k: torch.Tensor, *, temporal_span: int = 4, window: int = 21,
                  tile: tuple[int, int] = (3, 4), tau: float = 1.0) -> MotionFlow:
    """The released ``compute_tile_AMF`` on q, k [F, H, W, D], differentiable in both.

    ``displacement`` [P, H, W, 2] is (dy, dx) per token in the row-major grid (the released
    code keeps windowed pairs in tile-major order; the loss does not depend on the order).
    ``window_keys`` [P, tiles, window^2] holds each window slot's head-mean key (zeros for
    the self pairs, which have no window)."""
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"q and k must both have shape [F, H, W, D]; got {tuple(q.shape)} and {tuple(k.shape)}")
    f, h, w, d = q.shape
    tile = (int(tile[0]), int(tile[1]))
    check_released_grid(h, w, window, tile)
    pairs = torch.tensor(released_pairs(f, temporal_span), dtype=torch.long, device=q.device)
    scale = tau / math.sqrt(d)
    dtype = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 checks
    qf, kf = q.to(dtype).reshape(f, h * w, d), k.to(dtype).reshape(f, h * w, d)
    dev = q.device
    coords = torch.stack([torch.arange(h * w, device=dev) // w, torch.arange(h * w, device=dev) % w], -1).to(dtype)
    is_self = pairs[:, 0] == pairs[:, 1]
    disp = qf.new_zeros(pairs.shape[0], h, w, 2)
    keys = qf.new_zeros(pairs.shape[0], (h // tile[0]) * (w // tile[1]), window * window)
    for rows in is_self.nonzero().squeeze(1).split(max(1, (64 * 2**20) // (h * w) ** 2)):
        disp = disp.index_copy(0, rows, _self_pairs(qf, kf, pairs[rows, 0], coords, scale).reshape(-1, h, w, 2))
    win_rows = (~is_self).nonzero().squeeze(1)
    for chunk in win_rows.split(_pairs_per_chunk(h * w, d)) if win_rows.numel() else ():
        part, slot_keys = _windowed_pairs(qf, kf, pairs[chunk, 0], pairs[chunk, 1], coords, h, w, window, tile,
                                          scale)
        disp = disp.index_copy(0, chunk, _tile_major_to_grid(part, h, w, tile))
        keys = keys.index_copy(0, chunk, slot_keys)
    return MotionFlow(pairs, disp, keys, (f, h, w))


def _pairs_per_chunk(tokens: int, d: int) -> int:
    """Windowed pairs per chunk: a pair gathers about tokens x window^2 / tile keys (~4 x tokens x D at
    the defaults) and its tile-centre logits; keep a chunk near 64M floats."""
    return max(1, (64 * 2**20) // max(tokens * d * 4, 1))


def released_pair_weights(offsets: torch.Tensor, span: int) -> torch.Tensor:
    """``linspace(1, 0.8, span)[offset]``, the released weight of each pair."""
    return torch.linspace(1.0, 0.8, span, device=offsets.device)[offsets]


def released_amf_loss(ref: MotionFlow, gen: MotionFlow, span: int) -> torch.Tensor:
    """Squared error summed over tokens (both components), pair-weighted, averaged over pairs."""
    if ref.displacement.shape != gen.displacement.shape or not torch.equal(ref.pairs.cpu(), gen.pairs.cpu()):
        raise ValueError("reference and generated motion flows differ in frame pairs or token grid "
                         f"({tuple(ref.displacement.shape)} vs {tuple(gen.displacement.shape)}); extract both with "
                         "the same settings")
    sq = (ref.displacement.detach() - gen.displacement).pow(2).sum(dim=(1, 2, 3))
    return (sq * released_pair_weights(gen.offsets, span).to(sq.dtype)).mean()


def released_window_loss(gen: MotionFlow) -> torch.Tensor:
    """Per source frame: mean L2 norm (over the window slots) of the change of slot keys between
    consecutive windowed targets; then the mean over the source frames that have two targets."""
    pairs, wk = gen.pairs.to(gen.window_keys.device), gen.window_keys
    f = gen.grid[0]
    table = torch.full((f, f + 1), -1, dtype=torch.long, device=wk.device)
    table[pairs[:, 0], pairs[:, 1]] = torch.arange(pairs.shape[0], device=wk.device)
    nxt = table[pairs[:, 0], pairs[:, 1] + 1]
    has_next = (nxt >= 0) & (pairs[:, 1] > pairs[:, 0])
    if not bool(has_next.any()):
        return wk.sum() * 0.0
    per_row = (wk[nxt[has_next]] - wk[has_next]).norm(dim=-1).mean(dim=-1)  # [Q]
    src = pairs[has_next, 0]
    sums = per_row.new_zeros(f).index_add(0, src, per_row)
    counts = torch.bincount(src, minlength=f)
    return (sums[counts > 0] / counts[counts > 0]).mean()
