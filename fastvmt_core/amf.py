"""Attention motion flow (AMF): where each token of frame i moves to in frame j,
read from one DiT block's head-averaged queries and keys.

Two estimators over the same inputs ``q, k`` of shape ``[F, H, W, D]`` (frames x
token grid x head dim):

* ``sliding_window_amf``: FastVMT. A tile-centre query places a window in the
  target frame (soft expectation of positions over the whole frame), then every
  query of the tile attends only to the keys inside that window. Frame pairs are
  limited to a temporal span, so the cost is O(F * span) pairs of O(tiles * window)
  work instead of O(F^2) pairs of O((H*W)^2).
* ``global_amf``: the DiTFlow-style baseline, every query against every key of
  the target frame. Reference for correctness tests and the "full AMF" mode.

Displacements are ``(dy, dx)`` in token units. Attention logits are
``q . k / (sqrt(D) * tau)``, computed in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MotionFlow:
    """Motion between frame pairs of one clip.

    pairs:        LongTensor [P, 2], rows (i, j) with i < j, grouped by offset j - i.
    displacement: [P, H, W, 2], (dy, dx): where each token of frame i moves to in frame j.
    window_keys:  [P, n_tiles, D], mean key inside each tile's window in frame j
                  (sliding window only; ``None`` for the global estimator). The
                  correspondence-window loss compares them across target frames.
    grid:         (F, H, W) token grid the flow was computed on.
    """

    pairs: torch.Tensor
    displacement: torch.Tensor
    window_keys: torch.Tensor | None
    grid: tuple[int, int, int]

    @property
    def offsets(self) -> torch.Tensor:
        return self.pairs[:, 1] - self.pairs[:, 0]

    def detach(self) -> "MotionFlow":
        wk = None if self.window_keys is None else self.window_keys.detach()
        return MotionFlow(self.pairs, self.displacement.detach(), wk, self.grid)

    def to(self, device=None, dtype=None) -> "MotionFlow":
        wk = None if self.window_keys is None else self.window_keys.to(device=device, dtype=dtype)
        return MotionFlow(self.pairs.to(device=device), self.displacement.to(device=device, dtype=dtype), wk, self.grid)

    def summary(self) -> str:
        f, h, w = self.grid
        offs = sorted(set(self.offsets.tolist()))
        span = f"offsets {offs[0]}..{offs[-1]}" if offs else "no frame pairs"
        return f"{f} latent frames, {h}x{w} tokens, {self.pairs.shape[0]} frame pairs ({span})"


# Upper bound on gathered window-key elements per chunk of pairs (16M floats = 64 MiB).
CHUNK_ELEMENTS = 16 * 2**20


def frame_pairs(num_frames: int, temporal_span: int | None) -> list[tuple[int, int]]:
    """Frame pairs (i, j), j - i in 1..span (all i < j when span is None), grouped by offset."""
    max_offset = num_frames - 1 if temporal_span is None else min(temporal_span, num_frames - 1)
    return [(i, i + d) for d in range(1, max_offset + 1) for i in range(num_frames - d)]


def _check_qk(q: torch.Tensor, k: torch.Tensor) -> None:
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"q and k must both have shape [F, H, W, D]; got {tuple(q.shape)} and {tuple(k.shape)}")
    if q.shape[0] < 1 or q.shape[1] < 1 or q.shape[2] < 1:
        raise ValueError(f"q/k have an empty frame or token grid: {tuple(q.shape)}")


def _positions(h: int, w: int, device) -> torch.Tensor:
    """[h*w, 2] float (y, x) of every token, row-major."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([ys, xs], dim=-1).reshape(h * w, 2).float()


def _empty_flow(q: torch.Tensor, with_window_keys: bool) -> MotionFlow:
    f, h, w, d = q.shape
    wk = q.new_zeros(0, 0, d, dtype=torch.float32) if with_window_keys else None
    return MotionFlow(torch.zeros(0, 2, dtype=torch.long, device=q.device),
                      q.new_zeros(0, h, w, 2, dtype=torch.float32), wk, (f, h, w))


def global_amf(q: torch.Tensor, k: torch.Tensor, *, temporal_span: int | None = None,
               tau: float = 1.0) -> MotionFlow:
    """Every query of frame i against every key of frame j (DiTFlow-style AMF).

    ``temporal_span=None`` uses all pairs i < j; an integer limits j - i to 1..span.
    """
    _check_qk(q, k)
    f, h, w, d = q.shape
    pairs = frame_pairs(f, temporal_span)
    if not pairs:
        return _empty_flow(q, with_window_keys=False)
    scale = 1.0 / (math.sqrt(d) * tau)
    pos = _positions(h, w, q.device)
    qf = q.float().reshape(f, h * w, d)
    kf = k.float().reshape(f, h * w, d)
    disps = []
    # One batched matmul per frame offset keeps peak memory at one offset's logits.
    max_offset = max(j - i for i, j in pairs)
    for off in range(1, max_offset + 1):
        probs = torch.softmax(torch.bmm(qf[: f - off], kf[off:].transpose(1, 2)) * scale, dim=-1)
        disps.append(probs @ pos - pos)
    disp = torch.cat(disps).reshape(-1, h, w, 2)
    return MotionFlow(torch.tensor(pairs, dtype=torch.long, device=q.device), disp, None, (f, h, w))


# Tiles processed together, sharing one gathered box of keys (rows, cols of tiles).
SUPER_TILE = (2, 3)


def _super_tiles(ny, nx, slot, valid, super_tile, device):
    """Group the tile grid into super-tiles of up to gy x gx tiles.

    Returns ``group`` [n_groups, G] (tile index of each member; the grid is padded by
    repeating edge tiles), and the members' query slots [n_groups, G*S] with a validity
    mask that drops padding repeats and clipped slots, so every token appears once.
    """
    gy, gx = min(super_tile[0], ny), min(super_tile[1], nx)
    my, mx = -(-ny // gy) * gy, -(-nx // gx) * gx
    ty = torch.arange(my, device=device)
    tx = torch.arange(mx, device=device)
    tile = ty.clamp(max=ny - 1)[:, None] * nx + tx.clamp(max=nx - 1)[None, :]  # [my, mx]
    real = (ty < ny)[:, None] & (tx < nx)[None, :]
    tile = tile.view(my // gy, gy, mx // gx, gx).permute(0, 2, 1, 3).reshape(-1, gy * gx)
    real = real.view(my // gy, gy, mx // gx, gx).permute(0, 2, 1, 3).reshape(-1, gy * gx)
    group_slot = slot[tile].reshape(tile.shape[0], -1)
    group_valid = (valid[tile] & real[..., None]).reshape(tile.shape[0], -1)
    return tile, group_slot, group_valid


def _group_boxes(start_y, start_x, wy, wx, h, w):
    """Bounding box of each group's windows, one size for all groups.

    start_y/start_x [P, n_groups, G] window corners -> flat key index [P, n_groups, L]
    of the box, positions [P, n_groups, L, 2], and mask [P, n_groups, G, L] marking
    each member tile's own window inside the box.
    """
    dev = start_y.device
    by, bx = start_y.min(dim=-1).values, start_x.min(dim=-1).values
    hb = int((start_y.max(dim=-1).values - by).max()) + wy
    wb = int((start_x.max(dim=-1).values - bx).max()) + wx
    by, bx = by.clamp(max=h - hb), bx.clamp(max=w - wb)  # still covers every member window
    rows = by[..., None] + torch.arange(hb, device=dev)  # [P, n, hb]
    cols = bx[..., None] + torch.arange(wb, device=dev)  # [P, n, wb]
    row_in = (rows[:, :, None, :] >= start_y[..., None]) & (rows[:, :, None, :] < start_y[..., None] + wy)
    col_in = (cols[:, :, None, :] >= start_x[..., None]) & (cols[:, :, None, :] < start_x[..., None] + wx)
    mask = (row_in[..., :, None] & col_in[..., None, :]).flatten(-2)  # [P, n, G, hb*wb]
    ry = rows[..., :, None].expand(-1, -1, hb, wb)
    rx = cols[..., None, :].expand(-1, -1, hb, wb)
    key_index = (ry * w + rx).flatten(-2)
    pos = torch.stack([ry, rx], dim=-1).flatten(-3, -2).float()
    return key_index, pos, mask


def _tile_layout(h: int, w: int, tile: tuple[int, int], device):
    """Tiles cover the grid completely; edge tiles are clipped when h or w is not a multiple.

    Returns the tile counts, the flat index of each tile's representative (centre)
    token, and for every tile slot the flat token index plus a validity mask.
    """
    th, tw = tile
    ny, nx = -(-h // th), -(-w // tw)
    y0 = torch.arange(ny, device=device) * th
    x0 = torch.arange(nx, device=device) * tw
    # Centre of the clipped tile, so partial edge tiles get a representative inside the grid.
    cy = y0 + (torch.clamp(h - y0, max=th) // 2)
    cx = x0 + (torch.clamp(w - x0, max=tw) // 2)
    rep = (cy[:, None] * w + cx[None, :]).reshape(-1)
    sy = y0[:, None, None, None] + torch.arange(th, device=device)[None, None, :, None]  # [ny,1,th,1]
    sx = x0[None, :, None, None] + torch.arange(tw, device=device)[None, None, None, :]  # [1,nx,1,tw]
    valid = (sy < h) & (sx < w)
    slot = (sy.clamp(max=h - 1) * w + sx.clamp(max=w - 1)).expand(ny, nx, th, tw)
    valid = valid.expand(ny, nx, th, tw)
    return ny, nx, rep, slot.reshape(ny * nx, th * tw), valid.reshape(ny * nx, th * tw)


class WindowAttention(torch.autograd.Function):
    """Second pass: every query attends to the keys of its own tile's window only.

    Tiles are processed in groups ("super-tiles") that share one gathered box of keys,
    the bounding box of their windows; ``mask`` keeps each tile's queries to its own
    window, so the result is exactly the per-tile window attention.

    q_tiles [B, T, G*S, D] (T groups of G tiles of S queries), k_flat [B, HW, D],
    key_index [B, T, L] (flat key index per box slot), win_pos [B, T, L, 2],
    mask [B, T, G, L] (True inside the tile's window) -> expected positions [B, T, G*S, 2].

    Written by hand because autograd would keep the gathered keys (more values than
    the global logits) for backward. Here only the softmax is kept; keys are gathered
    again in backward, and pairs are processed in chunks so the gather stays small.
    """

    @staticmethod
    def forward(ctx, q_tiles, k_flat, key_index, win_pos, mask, scale, chunk):
        probs, out = [], []
        g = mask.shape[2]
        for c in range(0, q_tiles.shape[0], chunk):
            keys = _gather_keys(k_flat[c:c + chunk], key_index[c:c + chunk])
            logits = torch.matmul(q_tiles[c:c + chunk], keys.transpose(-1, -2)) * scale  # [b, T, G*S, L]
            b, t, gs, l = logits.shape
            logits = logits.view(b, t, g, gs // g, l).masked_fill(~mask[c:c + chunk, :, :, None, :], float("-inf"))
            p = torch.softmax(logits, dim=-1).view(b, t, gs, l)
            probs.append(p)
            out.append(torch.matmul(p, win_pos[c:c + chunk]))
        ctx.save_for_backward(q_tiles, k_flat, key_index, win_pos, torch.cat(probs))
        ctx.scale, ctx.chunk = scale, chunk
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad_out):
        q_tiles, k_flat, key_index, win_pos, probs = ctx.saved_tensors
        grad_q = torch.empty_like(q_tiles) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(k_flat) if ctx.needs_input_grad[1] else None
        b, hw, d = k_flat.shape
        for c in range(0, b, ctx.chunk):
            sl = slice(c, c + ctx.chunk)
            p = probs[sl]
            g_p = torch.matmul(grad_out[sl], win_pos[sl].transpose(-1, -2))  # [b, T, S, L]
            g_logits = p * (g_p - (g_p * p).sum(dim=-1, keepdim=True)) * ctx.scale
            if grad_q is not None:
                grad_q[sl] = torch.matmul(g_logits, _gather_keys(k_flat[sl], key_index[sl]))
            if grad_k is not None:
                g_keys = torch.matmul(g_logits.transpose(-1, -2), q_tiles[sl])  # [b, T, L, D]
                nb = g_keys.shape[0]
                rows = (key_index[sl] + torch.arange(nb, device=k_flat.device).view(-1, 1, 1) * hw).reshape(-1)
                grad_k[sl].reshape(nb * hw, d).index_add_(0, rows, g_keys.reshape(-1, d))
        return grad_q, grad_k, None, None, None, None, None


def _gather_keys(k_flat, key_index):
    """[B, HW, D] and [B, T, L] -> [B, T, L, D] (one flat index_select)."""
    b, hw, d = k_flat.shape
    rows = key_index + torch.arange(b, device=k_flat.device).view(-1, 1, 1) * hw
    return k_flat.reshape(b * hw, d).index_select(0, rows.reshape(-1)).reshape(*key_index.shape, d)


def _window_means(k_frames, start_y, start_x, wy, wx):
    """Mean key of each tile's window, by an integral image: [B, H, W, D] -> [B, T, D]."""
    b, h, w, d = k_frames.shape
    integral = F.pad(k_frames.cumsum(1).cumsum(2), (0, 0, 1, 0, 1, 0))  # [B, H+1, W+1, D]
    flat = integral.reshape(b, (h + 1) * (w + 1), d)

    def corner(y, x):
        idx = (y * (w + 1) + x).unsqueeze(-1).expand(-1, -1, d)
        return torch.gather(flat, 1, idx)

    y1, x1 = start_y + wy, start_x + wx
    box = corner(y1, x1) - corner(start_y, x1) - corner(y1, start_x) + corner(start_y, start_x)
    return box / (wy * wx)


def sliding_window_amf(q: torch.Tensor, k: torch.Tensor, *, temporal_span: int = 5, window: int = 21,
                       tile: tuple[int, int] = (3, 4), tau: float = 1.0) -> MotionFlow:
    """FastVMT's sliding-window AMF (paper eq. 1-4), differentiable in ``q`` and ``k``.

    The window centre comes from the tile-centre query's soft expectation of
    positions over the whole target frame (eq. 2), rounded to a token and clamped
    so the window stays inside the frame; a window larger than the grid becomes
    the whole frame along that axis. Window placement carries no gradient; the
    displacements inside the window do.
    """
    _check_qk(q, k)
    if temporal_span < 1 or window < 1 or tile[0] < 1 or tile[1] < 1 or tau <= 0:
        raise ValueError(f"invalid sliding-window parameters: span={temporal_span}, window={window}, tile={tile}, tau={tau}")
    f, h, w, d = q.shape
    pairs = frame_pairs(f, temporal_span)
    if not pairs:
        return _empty_flow(q, with_window_keys=True)
    dev = q.device
    scale = 1.0 / (math.sqrt(d) * tau)
    wy, wx = min(window, h), min(window, w)
    ny, nx, rep, slot, valid = _tile_layout(h, w, tile, dev)
    pos = _positions(h, w, dev)
    group, group_slot, group_valid = _super_tiles(ny, nx, slot, valid, SUPER_TILE, dev)

    qf = q.float().reshape(f, h * w, d)
    kf = k.float().reshape(f, h * w, d)
    disps, wkeys = [], []
    max_offset = max(j - i for i, j in pairs)
    for off in range(1, max_offset + 1):
        q_src, k_dst = qf[: f - off], kf[off:]
        n_pairs = f - off
        # Pass 1 (no gradient): where does each tile's centre query land in frame j?
        with torch.no_grad():
            logits = torch.bmm(q_src[:, rep], k_dst.transpose(1, 2)) * scale  # [P, T, HW]
            centre = torch.softmax(logits, dim=-1) @ pos  # [P, T, 2]
            start_y = (centre[..., 0].round().long() - wy // 2).clamp(0, h - wy)
            start_x = (centre[..., 1].round().long() - wx // 2).clamp(0, w - wx)
            key_index, box_pos, mask = _group_boxes(start_y[:, group], start_x[:, group], wy, wx, h, w)
        q_groups = q_src[:, group_slot]  # [P, n_groups, G*S, D]
        chunk = max(1, CHUNK_ELEMENTS // (group.shape[0] * key_index.shape[-1] * d))
        exp_pos = WindowAttention.apply(q_groups, k_dst, key_index, box_pos, mask, scale, chunk)
        wk = _window_means(k_dst.reshape(n_pairs, h, w, d), start_y, start_x, wy, wx)
        # Scatter slots back to the token grid; clipped slots and padding tiles are dropped.
        disp = exp_pos.new_zeros(n_pairs, h * w, 2)
        disp = disp.index_copy(1, group_slot[group_valid], exp_pos[:, group_valid])
        disps.append(disp - pos)
        wkeys.append(wk)
    disp = torch.cat(disps).reshape(-1, h, w, 2)
    return MotionFlow(torch.tensor(pairs, dtype=torch.long, device=dev), disp, torch.cat(wkeys), (f, h, w))
