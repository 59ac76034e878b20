"""CoTracker3 point tracking for the motion fidelity metric, where the user has its checkpoint.

The paper's motion fidelity (after Yatim et al. 2024) tracks points with CoTracker. This
module is a from-scratch PyTorch implementation of the *offline* CoTracker3 network
(Karaev et al. 2024, "CoTracker3: Simpler and Better Point Tracking by Pseudo-Labelling
Real Videos") whose module names and shapes are those of the released checkpoint
``scaled_offline.pth`` (Hugging Face ``facebook/cotracker3``), so that file loads as it is
with :func:`load_cotracker`. Nothing is downloaded; KLT stays the metric's default.

What the network computes, in the order :meth:`CoTracker3.forward` runs it:

1. ``fnet``: a CNN gives every frame a 128-d feature map at 1/4 resolution (four residual
   stages, resized to 1/4 and fused), unit-normalised per pixel; average pooling makes a
   4-level pyramid.
2. Each query point takes the 7x7 patch of features around it in its query frame, at
   every level (bilinear sampling, border padding, pixel-centre coordinates).
3. Six refinement passes over all frames at once. At each frame, the 7x7 patch around
   the current estimate is correlated with the query's 7x7 patch (a 49x49 volume per
   level, embedded by ``corr_mlp`` to 256-d). Together with the visibility and
   confidence logits and a sinusoidal code of the displacements to the previous and
   next frame, this forms a 1110-d token per point and frame (plus a time embedding).
4. ``updateformer``: attention along time for each track, then across tracks at each
   frame through 64 learned "virtual tracks"; heads give coordinate, visibility and
   confidence updates.

:class:`CoTrackerPointTracker` wraps it as the released predictor does for query points:
frames resized to 384x512, a 6x6 support grid added to the queries, six passes, a point
visible where its visibility exceeds 0.9, query points put back exactly in their frame.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CoTracker3", "CoTrackerPointTracker", "load_cotracker", "grid_points", "MODEL_RESOLUTION"]

MODEL_RESOLUTION = (384, 512)  # (height, width) the released models run at
STRIDE = 4
LATENT_DIM = 128
CORR_RADIUS = 3                # 7x7 patches
CORR_LEVELS = 4
HIDDEN = 384
HEADS = 8
VIRTUAL_TRACKS = 64
TOKEN_DIM = 1110               # 2 logits + 4 levels x 256 correlation + 84 displacement code
OFFLINE_WINDOW = 60            # time embedding length of the offline checkpoint
ONLINE_WINDOW = 16             # ... and of the online one (same keys, other use)
SUPPORT_GRID = 6
VISIBLE = 0.9
ITERATIONS = 6
CNN_FRAMES = 8                 # frames per feature-CNN call


# --------------------------------------------------------------------------- sampling

def sample_bilinear(maps: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Sample ``maps`` [B, C, H, W] at pixel positions ``xy`` [B, ..., 2] (x, y; 0 is the
    centre of the first pixel; outside the map the border value) -> [B, ..., C]."""
    b, c, h, w = maps.shape
    scale = xy.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (xy * scale - 1.0).reshape(b, -1, 1, 2)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[..., 0].transpose(1, 2).reshape(*xy.shape[:-1], c)


def sample_at_frames(maps: torch.Tensor, frame: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Sample ``maps`` [B, T, C, H, W] in frame ``frame`` [B, N] (integer) at pixel positions
    ``xy`` [B, N, P, 2] -> [B, N, P, C]; one 3-D lookup, no per-query copy of a map."""
    b, t, c, h, w = maps.shape
    n, p = xy.shape[1:3]
    txy = torch.cat([xy, frame[:, :, None, None].to(xy.dtype).expand(b, n, p, 1)], dim=-1)
    scale = xy.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1), 2.0 / max(t - 1, 1)])
    grid = (txy * scale - 1.0).reshape(b, -1, 1, 1, 3)
    out = F.grid_sample(maps.transpose(1, 2), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[..., 0, 0].transpose(1, 2).reshape(b, n, p, c)


def patch_offsets(radius: int, device) -> torch.Tensor:
    """Offsets [(2r+1)^2, 2] (x, y) of a square patch. The first axis of the flattened
    patch runs over x: the checkpoint's correlation MLP was trained on that order."""
    d = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dx, dy = torch.meshgrid(d, d, indexing="ij")
    return torch.stack([dx, dy], dim=-1).reshape(-1, 2)


def displacement_code(x: torch.Tensor, degrees: int = 10) -> torch.Tensor:
    """x [..., D] -> [..., D + 2 * D * degrees]: x, then sin and cos of x * 2^k
    (k = 0..degrees-1; frequency-major, then the D inputs)."""
    scales = 2.0 ** torch.arange(degrees, device=x.device, dtype=x.dtype)
    xb = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(xb), torch.cos(xb)], dim=-1)


def sincos_time_embedding(length: int, dim: int) -> torch.Tensor:
    """[1, length, dim]: sin then cos of position / 10000^(2i/dim) for positions 0..length-1."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angle = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)[None].float()


# --------------------------------------------------------------------------- feature CNN

class _Residual(nn.Module):
    """Two 3x3 convolutions with instance norm; a strided 1x1 shortcut when downsampling."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.downsample = None if stride == 1 else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride),
                                                                 nn.InstanceNorm2d(cout))

    def forward(self, x):
        y = F.relu(F.instance_norm(self.conv1(x)))
        y = F.relu(F.instance_norm(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class _FeatureEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        widths, strides, cin = (64, 96, 128, 128), (1, 2, 2, 2), 64
        for i, (cout, s) in enumerate(zip(widths, strides), start=1):
            setattr(self, f"layer{i}", nn.Sequential(_Residual(cin, cout, s), _Residual(cout, cout, 1)))
            cin = cout
        self.conv2 = nn.Conv2d(sum(widths), 2 * LATENT_DIM, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * LATENT_DIM, LATENT_DIM, 1)

    def forward(self, x):
        size = (x.shape[-2] // STRIDE, x.shape[-1] // STRIDE)
        x = F.relu(F.instance_norm(self.conv1(x)))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(F.interpolate(x, size, mode="bilinear", align_corners=True))
        x = F.relu(F.instance_norm(self.conv2(torch.cat(stages, dim=1))))
        return self.conv3(x)


# --------------------------------------------------------------------------- transformer

class _Mlp(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, tanh_gelu: bool):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cin, hidden), nn.Linear(hidden, cout)
        self.approximate = "tanh" if tanh_gelu else "none"

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.to_q = nn.Linear(HIDDEN, HIDDEN)
        self.to_kv = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.to_out = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, context):
        def heads(t):
            return t.unflatten(-1, (HEADS, -1)).transpose(1, 2)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).flatten(-2))


class _Block(nn.Module):
    """Pre-norm attention block; ``cross``: attends to a (normalised) context."""

    def __init__(self, cross: bool):
        super().__init__()
        self.cross = cross
        self.norm1 = nn.LayerNorm(HIDDEN, elementwise_affine=False, eps=1e-6)
        if cross:
            self.norm_context = nn.LayerNorm(HIDDEN)
            self.cross_attn = _Attention()
        else:
            self.attn = _Attention()
        self.norm2 = nn.LayerNorm(HIDDEN, elementwise_affine=False, eps=1e-6)
        self.mlp = _Mlp(HIDDEN, 4 * HIDDEN, HIDDEN, tanh_gelu=True)

    def forward(self, x, context=None):
        h = self.norm1(x)
        x = x + (self.cross_attn(h, self.norm_context(context)) if self.cross else self.attn(h, h))
        return x + self.mlp(self.norm2(x))


class _UpdateTransformer(nn.Module):
    def __init__(self, depth: int = 3):
        super().__init__()
        self.input_transform = nn.Linear(TOKEN_DIM, HIDDEN)
        self.flow_head = nn.Linear(HIDDEN, 2)
        self.vis_conf_head = nn.Linear(HIDDEN, 2)
        self.virual_tracks = nn.Parameter(torch.randn(1, VIRTUAL_TRACKS, 1, HIDDEN))  # sic: the checkpoint's name
        self.time_blocks = nn.ModuleList(_Block(False) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(_Block(False) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(_Block(True) for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(_Block(True) for _ in range(depth))

    def forward(self, tokens):
        """tokens [B, N, T, 1110] -> updates [B, N, T, 4] (dx, dy, visibility, confidence)."""
        x = self.input_transform(tokens)
        b, n, t, c = x.shape
        x = torch.cat([x, self.virual_tracks.expand(b, -1, t, -1)], dim=1)
        for time_block, virt_self, to_point, to_virt in zip(self.time_blocks, self.space_virtual_blocks,
                                                            self.space_point2virtual_blocks,
                                                            self.space_virtual2point_blocks):
            x = time_block(x.reshape(-1, t, c)).reshape(b, -1, t, c)
            per_frame = x.transpose(1, 2).reshape(b * t, -1, c)
            points, virtual = per_frame[:, :n], per_frame[:, n:]
            virtual = virt_self(to_virt(virtual, points))
            points = to_point(points, virtual)
            x = torch.cat([points, virtual], dim=1).reshape(b, t, -1, c).transpose(1, 2)
        points = x[:, :n]
        return torch.cat([self.flow_head(points), self.vis_conf_head(points)], dim=-1)


# --------------------------------------------------------------------------- the tracker

class CoTracker3(nn.Module):
    """The offline CoTracker3 network; state-dict names as in ``scaled_offline.pth``."""

    def __init__(self, window: int = OFFLINE_WINDOW):
        super().__init__()
        self.fnet = _FeatureEncoder()
        self.updateformer = _UpdateTransformer()
        self.corr_mlp = _Mlp((2 * CORR_RADIUS + 1) ** 4, HIDDEN, 256, tanh_gelu=False)
        self.register_buffer("time_emb", sincos_time_embedding(window, TOKEN_DIM))

    def time_embedding(self, frames: int) -> torch.Tensor:
        emb = self.time_emb
        if emb.shape[1] != frames:
            emb = F.interpolate(emb.float().transpose(1, 2), size=frames, mode="linear").transpose(1, 2)
        return emb

    def feature_pyramid(self, video: torch.Tensor, after_group: Callable[[], None] = lambda: None) -> list:
        """video [B, T, 3, H, W] in 0..255 -> CORR_LEVELS maps [B*T, 128, h, w]."""
        frames = video.flatten(0, 1)
        groups = []
        # frames go through the CNN in groups: its full-resolution activations are the peak memory
        for s in range(0, len(frames), CNN_FRAMES):
            groups.append(self.fnet(2 * (frames[s:s + CNN_FRAMES] / 255.0) - 1.0))
            after_group()
        fmaps = torch.cat(groups)
        fmaps = fmaps / fmaps.square().sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()
        pyramid = [fmaps]
        for _ in range(CORR_LEVELS - 1):
            pyramid.append(F.avg_pool2d(pyramid[-1], 2, stride=2))
        return pyramid

    def correlation_embedding(self, level_maps: torch.Tensor, query_patch: torch.Tensor, coords: torch.Tensor,
                              offsets: torch.Tensor, frames_per_chunk: int) -> torch.Tensor:
        """Per frame and point, the 49x49 correlation of the patch around ``coords`` [B, T, N, 2]
        (level pixels) with the query's patch [B, N, 49, C], embedded -> [B, T, N, 256].
        Frames go in chunks to bound the memory of the [T, N, 49, 49] volume."""
        b, t, n, _ = coords.shape
        maps = level_maps.unflatten(0, (b, t))
        out = []
        for s in range(0, t, frames_per_chunk):
            c = coords[:, s:s + frames_per_chunk]
            tc = c.shape[1]
            patch = sample_bilinear(maps[:, s:s + tc].flatten(0, 1), (c[..., None, :] + offsets).flatten(0, 1))
            query = query_patch[:, None].expand(b, tc, *query_patch.shape[1:]).flatten(0, 1)
            volume = torch.einsum("knpc,knqc->knpq", patch, query)
            out.append(self.corr_mlp(volume.flatten(-2)).unflatten(0, (b, tc)))
        return torch.cat(out, dim=1)

    def forward(self, video: torch.Tensor, queries: torch.Tensor, iterations: int = ITERATIONS,
                progress: Optional[Callable[[int, int], None]] = None, frames_per_chunk: int = 16):
        """video [B, T, 3, H, W] in 0..255 (H, W multiples of 4); queries [B, N, 3] (frame, x, y)
        in pixels -> positions [B, T, N, 2], visibility and confidence [B, T, N] in 0..1.
        ``progress(done, total)`` is called at the start, after each group of frames through
        the CNN and after each refinement pass (a place to stop, too)."""
        b, t, _, h, w = video.shape
        n = queries.shape[1]
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"video: height and width must be multiples of {STRIDE}, got {h}x{w}")
        total, ticks = -(-b * t // CNN_FRAMES) + iterations, itertools.count()

        def tick():
            k = next(ticks)
            if progress is not None:
                progress(k, total)
        tick()
        pyramid = self.feature_pyramid(video, tick)
        offsets = patch_offsets(CORR_RADIUS, video.device)
        query_frame = queries[..., 0].long()
        query_xy = queries[..., 1:3] / STRIDE

        query_patches = [sample_at_frames(maps.unflatten(0, (b, t)), query_frame,
                                          query_xy[..., None, :] / 2 ** level + offsets)
                         for level, maps in enumerate(pyramid)]

        coords = query_xy[:, None].expand(b, t, n, 2).float()
        vis = torch.zeros(b, t, n, device=video.device)
        conf = torch.zeros(b, t, n, device=video.device)
        scale = torch.tensor([MODEL_RESOLUTION[1] / STRIDE, MODEL_RESOLUTION[0] / STRIDE], device=video.device)
        time_emb = self.time_embedding(t)
        for _ in range(iterations):
            corr = torch.cat([self.correlation_embedding(maps, query_patches[level], coords / 2 ** level, offsets,
                                                         frames_per_chunk)
                              for level, maps in enumerate(pyramid)], dim=-1)
            to_next = F.pad(coords[:, :-1] - coords[:, 1:], (0, 0, 0, 0, 0, 1))
            to_prev = F.pad(coords[:, 1:] - coords[:, :-1], (0, 0, 0, 0, 1, 0))
            motion = displacement_code(torch.cat([to_next / scale, to_prev / scale], dim=-1))
            tokens = torch.cat([vis[..., None], conf[..., None], corr, motion], dim=-1).transpose(1, 2)
            delta = self.updateformer(tokens + time_emb[:, None]).transpose(1, 2)  # [B, T, N, 4]
            coords = coords + delta[..., :2]
            vis, conf = vis + delta[..., 2], conf + delta[..., 3]
            tick()
        return coords * STRIDE, torch.sigmoid(vis), torch.sigmoid(conf)


def load_cotracker(state_dict: Mapping[str, torch.Tensor], name: str = "checkpoint") -> CoTracker3:
    """A :class:`CoTracker3` holding ``state_dict`` (as saved by CoTracker's release, or under
    a "model" key). Raises ValueError naming ``name`` when it is not CoTracker3's offline
    checkpoint."""
    if "model" in state_dict and not torch.is_tensor(state_dict["model"]):
        state_dict = state_dict["model"]
    hint = ("download scaled_offline.pth from huggingface.co/facebook/cotracker3 into ComfyUI's "
            "models/cotracker folder")
    emb = state_dict.get("time_emb")
    if emb is None or not torch.is_tensor(emb) or emb.ndim != 3 or emb.shape[2] != TOKEN_DIM:
        raise ValueError(f"{name}: not a CoTracker3 checkpoint (no 1110-wide time embedding; CoTracker2 and other "
                         f"trackers are not supported); {hint}")
    if emb.shape[1] == ONLINE_WINDOW:
        raise ValueError(f"{name}: this is CoTracker3's online checkpoint (windows of {ONLINE_WINDOW} frames); "
                         f"the metric needs the offline one: {hint}")
    model = CoTracker3(window=emb.shape[1])
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict)
                   if not torch.is_tensor(state_dict[k]) or state_dict[k].shape != expected[k].shape)
    if missing or extra or wrong:
        parts = [f"{label} {len(keys)} (e.g. {keys[0]})" for label, keys in
                 (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if keys]
        raise ValueError(f"{name}: does not match CoTracker3's offline network: {'; '.join(parts)}; {hint}")
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return model.eval().requires_grad_(False)


def grid_points(count: int, height: int, width: int) -> np.ndarray:
    """About ``count`` points [N, 2] (x, y) on a regular grid over a height x width frame,
    a margin of width/64 from the border (the released predictor's grid)."""
    side = max(1, int(math.isqrt(max(1, int(count)))))
    if side == 1:
        return np.array([[width / 2.0, height / 2.0]], np.float32)
    margin = width / 64.0
    ys = np.linspace(margin, height - margin, side, dtype=np.float32)
    xs = np.linspace(margin, width - margin, side, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1).reshape(-1, 2)


class CoTrackerPointTracker:
    """A fidelity tracker: (frames [T, H, W, 3] float 0..1, max_tracks) -> positions [N, T, 2]
    (x, y in the frames' pixels), NaN where CoTracker calls a point hidden. Points start
    on a regular grid in the first frame."""

    def __init__(self, model: CoTracker3, *, device=None, name: str = "CoTracker3",
                 progress: Optional[Callable[[int, int], None]] = None):
        self.model = model
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.name = name
        self.progress = progress

    @torch.no_grad()
    def track(self, frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions [N, T, 2] and visibility [N, T] (bool) of ``points`` [N, 2] given in the
        first frame, as the released predictor computes them for query points."""
        t, h, w = frames.shape[:3]
        mh, mw = MODEL_RESOLUTION
        video = torch.from_numpy(np.ascontiguousarray(frames[..., :3], dtype=np.float32)).to(self.device)
        video = F.interpolate(video.permute(0, 3, 1, 2) * 255.0, (mh, mw), mode="bilinear", align_corners=True)
        to_model = np.array([(mw - 1) / max(w - 1, 1), (mh - 1) / max(h - 1, 1)], np.float32)
        support = grid_points(SUPPORT_GRID ** 2, mh, mw)
        xy = np.concatenate([points.astype(np.float32) * to_model, support])
        queries = torch.from_numpy(np.concatenate([np.zeros((len(xy), 1), np.float32), xy], axis=1))
        self.model.to(self.device)
        pos, vis, _ = self.model(video[None], queries[None].to(self.device), progress=self.progress)
        n = len(points)
        pos = pos[0, :, :n].float().cpu().numpy()
        visible = (vis[0, :, :n] > VISIBLE).cpu().numpy()
        pos[0], visible[0] = xy[:n], True      # a query point is where it was asked, and visible
        pos = pos / to_model
        return pos.transpose(1, 0, 2), visible.T

    def __call__(self, frames: np.ndarray, max_tracks: int) -> np.ndarray:
        h, w = frames.shape[1:3]
        pos, visible = self.track(frames, grid_points(max_tracks, h, w))
        pos[~visible] = np.nan
        return pos.astype(np.float32)
