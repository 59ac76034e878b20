"""Peak memory of one guidance gradient pass, from the model geometry, the token count and
the settings: what the ComfyUI layer reserves before guidance and how many blocks keep
their activations (``keep_activations="auto"``).

A gradient pass runs the DiT blocks before the motion block, the motion block up to its
queries/keys, the motion flow and its loss, then backward. Only the latent needs a
gradient, not the weights, so a Linear layer saves its weight but not its input; what a
Wan attention block (``WanAttentionBlock.forward``) saves for backward is what its norms,
RoPE, attention, gates and GELU need: about 12 hidden states (tokens x dim) and one FFN
hidden state (tokens x ffn_dim). These counts were read with
``torch.autograd.graph.saved_tensors_hooks`` in a real gradient pass. The weights
themselves are read in place (``PassGeometry.weight_bytes`` 0); only weights that must be
converted for a backward (fp8 cast to the compute dtype) cost a per-pass copy.

Blocks ``0..kept_blocks-1`` keep their saved tensors until backward; the others run under
a per-block checkpoint: only their input is kept, and one of them is recomputed at a time
during backward. Backward of one block needs about its own saved size again in gradients.
Checked against peaks measured in real ComfyUI on CPU (bench/memory.py, tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from .amf import CHUNK_ELEMENTS, SUPER_TILE, frame_pairs
from .settings import FastVMTSettings

SAVED_PER_BLOCK_DIM = 12      # hidden states saved per block (see above)
SAVED_PER_BLOCK_FFN = 1       # FFN hidden states saved per block
MOTION_BLOCK_DIM = 4          # the motion block up to its RoPE'd queries/keys
BACKWARD_TRANSIENT = 1.0      # gradients alive while one block runs backward, per saved byte


@dataclass(frozen=True)
class PassGeometry:
    """What a gradient pass computes on. ``tokens`` = latent frames x (h/2) x (w/2)."""
    frames: int                 # latent frames (token grid F)
    height: int                 # token grid H
    width: int                  # token grid W
    dim: int
    ffn_dim: int
    num_heads: int
    block_params: int           # parameters of one DiT block
    act_bytes: int = 2          # bytes per element of the hidden state (compute dtype)
    weight_bytes: int = 0       # bytes per element of a per-pass weight copy (0: weights read in place)
    batch: int = 1

    @property
    def tokens(self) -> int:
        return self.frames * self.height * self.width


@dataclass(frozen=True)
class PassMemory:
    """Bytes of one gradient pass beyond the loaded model, and its parts."""
    total: int
    kept_inputs: int            # block inputs (checkpoints) or all blocks' saved tensors
    block_weights: int          # per-pass weight copies alive at the peak
    block_backward: int         # one block recomputed (or backward through kept ones) plus its gradients
    motion_block: int
    motion_flow: int
    kept_blocks: int            # blocks that keep their activations

    def gib(self) -> float:
        return self.total / 2**30


def _motion_flow_bytes(g: PassGeometry, s: FastVMTSettings) -> int:
    hw = g.height * g.width
    head_dim = g.dim // g.num_heads
    qk = 2 * g.tokens * head_dim * 4 * 2          # float32 q, k and their gradients
    if s.mode == "AMF":                           # global flow: every pair's probabilities are saved
        pairs = len(frame_pairs(g.frames, None))
        biggest = max(g.frames - 1, 1)
        return g.batch * (qk + (pairs + 2 * biggest) * hw * hw * 4)
    ty, tx = s.tile
    tiles_y, tiles_x = -(-g.height // ty), -(-g.width // tx)
    pairs = max(g.frames - 1, 1)                         # frame pairs of the largest offset
    centre = 2 * pairs * tiles_y * tiles_x * hw * 4     # no-grad logits and softmax of one offset
    # Window attention gathers, per super-tile, the keys of its box of windows; processed
    # in chunks of at most CHUNK_ELEMENTS (keys, logits and their gradients: 3 such).
    groups = -(-tiles_y // SUPER_TILE[0]) * -(-tiles_x // SUPER_TILE[1])
    box = min(g.height, SUPER_TILE[0] * ty + s.window) * min(g.width, SUPER_TILE[1] * tx + s.window)
    window = 3 * 4 * min(CHUNK_ELEMENTS, pairs * groups * box * head_dim)
    return g.batch * (qk + centre + window)


def gradient_pass_memory(g: PassGeometry, s: FastVMTSettings, *, kept_blocks: int = 0,
                         gradient_blocks: int | None = None) -> PassMemory:
    """Peak extra bytes of one gradient pass (estimate; see the module doc for the counts).
    ``gradient_blocks``: blocks run whole with autograd (default: those before the motion
    block); the first ``kept_blocks`` of them keep their activations."""
    before = s.motion_block if gradient_blocks is None else gradient_blocks
    if not 0 <= kept_blocks <= before:
        raise ValueError(f"kept_blocks: must be between 0 and {before}, got {kept_blocks}")
    hidden = g.batch * g.tokens * g.dim * g.act_bytes
    ffn = g.batch * g.tokens * g.ffn_dim * g.act_bytes
    saved = SAVED_PER_BLOCK_DIM * hidden + SAVED_PER_BLOCK_FFN * ffn
    weights = g.block_params * g.weight_bytes
    recomputed = before - kept_blocks
    motion = MOTION_BLOCK_DIM * hidden + weights
    flow = _motion_flow_bytes(g, s)
    kept = kept_blocks * saved + recomputed * hidden
    block_weights = kept_blocks * weights + (weights if recomputed else 0)
    backward = int((1 + BACKWARD_TRANSIENT) * saved if recomputed else BACKWARD_TRANSIENT * saved)
    # Forward ends with everything kept plus the motion block and the flow; backward starts
    # with the kept tensors and one block's recompute and gradients.
    peak = kept + block_weights + max(motion + flow, backward)
    return PassMemory(int(peak), int(kept), int(block_weights), backward, int(motion), int(flow), kept_blocks)


def most_kept_blocks(g: PassGeometry, s: FastVMTSettings, budget: int, gradient_blocks: int | None = None) -> int:
    """The largest ``kept_blocks`` whose gradient pass fits in ``budget`` bytes (0 when even
    recomputing every block does not fit: the caller then makes room for that)."""
    before = s.motion_block if gradient_blocks is None else gradient_blocks
    fits = [k for k in range(before + 1)
            if gradient_pass_memory(g, s, kept_blocks=k, gradient_blocks=before).total <= budget]
    return max(fits, default=0)


# Published Wan geometries (config.json of the Wan-AI releases): dim, ffn_dim, heads, blocks,
# latent channels, VAE downsampling (time, space).
WAN_MODELS = {
    "Wan 2.1 1.3B": dict(dim=1536, ffn_dim=8960, num_heads=12, num_blocks=30, channels=16, vae=(4, 8)),
    "Wan 2.2 5B": dict(dim=3072, ffn_dim=14336, num_heads=24, num_blocks=30, channels=48, vae=(4, 16)),
    "Wan 2.1/2.2 14B": dict(dim=5120, ffn_dim=13824, num_heads=40, num_blocks=40, channels=16, vae=(4, 8)),
}


def wan_block_params(dim: int, ffn_dim: int, text_dim: int | None = None) -> int:
    """Parameters of one Wan T2V attention block: 4 self- and 4 cross-attention projections
    with biases, 4 RMSNorm weights, norm3, the FFN and the modulation."""
    text_dim = dim if text_dim is None else text_dim
    attn = 4 * (dim * dim + dim)
    cross = 2 * (dim * dim + dim) + 2 * (text_dim * dim + dim)
    return attn + cross + 4 * dim + 2 * dim + (dim * ffn_dim + ffn_dim) + (ffn_dim * dim + dim) + 6 * dim


def published_geometry(model: str, width: int, height: int, length: int, act_bytes: int = 2,
                       weight_bytes: int = 0) -> PassGeometry:
    """The gradient pass geometry of a published Wan model at a video size (pixels, frames)."""
    m = WAN_MODELS[model]
    t, sp = m["vae"]
    frames = (length - 1) // t + 1
    return PassGeometry(frames=frames, height=height // sp // 2, width=width // sp // 2, dim=m["dim"],
                        ffn_dim=m["ffn_dim"], num_heads=m["num_heads"],
                        block_params=wan_block_params(m["dim"], m["ffn_dim"]), act_bytes=act_bytes,
                        weight_bytes=weight_bytes)
