"""The gradient-pass memory estimator (fastvmt_core/memory.py) on hand-counted cases.
Its agreement with peaks measured in real ComfyUI is tested in test_memory_host.py."""

import pytest

from fastvmt_core import FastVMTSettings, PassGeometry, gradient_pass_memory, published_geometry
from fastvmt_core.memory import SAVED_PER_BLOCK_DIM, SAVED_PER_BLOCK_FFN, wan_block_params

G = PassGeometry(frames=3, height=4, width=6, dim=64, ffn_dim=256, num_heads=2, block_params=1000, act_bytes=4,
                 weight_bytes=2)
HIDDEN = 3 * 4 * 6 * 64 * 4
SAVED = SAVED_PER_BLOCK_DIM * HIDDEN + SAVED_PER_BLOCK_FFN * 3 * 4 * 6 * 256 * 4


def test_recompute_keeps_one_input_per_block_and_one_block_of_weights():
    m = gradient_pass_memory(G, FastVMTSettings(motion_block=5), keep_activations=False)
    assert m.kept_inputs == 5 * HIDDEN and m.block_weights == 1000 * 2
    assert m.total == m.kept_inputs + m.block_weights + max(m.motion_block + m.motion_flow, m.block_backward)


def test_keeping_activations_holds_every_block_and_its_weights():
    s = FastVMTSettings(motion_block=5)
    kept = gradient_pass_memory(G, s, keep_activations=True)
    assert kept.kept_inputs == 5 * SAVED and kept.block_weights == 5 * 1000 * 2
    assert kept.total > gradient_pass_memory(G, s, keep_activations=False).total


def test_modes_agree_when_the_motion_block_is_the_first():
    s = FastVMTSettings(motion_block=0)
    a = gradient_pass_memory(G, s, keep_activations=True)
    b = gradient_pass_memory(G, s, keep_activations=False)
    assert a.kept_inputs == b.kept_inputs == 0


@pytest.mark.parametrize("keep", [True, False])
def test_dit_part_grows_linearly_with_tokens_and_batch(keep):
    s = FastVMTSettings(motion_block=8)
    one = gradient_pass_memory(G, s, keep_activations=keep)
    two = gradient_pass_memory(PassGeometry(**{**G.__dict__, "batch": 2}), s, keep_activations=keep)
    assert two.kept_inputs == 2 * one.kept_inputs and two.block_backward == 2 * one.block_backward


def test_global_flow_needs_every_pair_and_the_window_flow_does_not():
    g = PassGeometry(frames=21, height=30, width=52, dim=1536, ffn_dim=8960, num_heads=12, block_params=1)
    window = gradient_pass_memory(g, FastVMTSettings(), keep_activations=False).motion_flow
    full = gradient_pass_memory(g, FastVMTSettings(mode="AMF"), keep_activations=False).motion_flow
    pairs = 21 * 20 // 2
    assert full >= pairs * (30 * 52) ** 2 * 4 > 5 * window


def test_published_geometry_matches_the_known_token_counts():
    g = published_geometry("Wan 2.1 1.3B", 832, 480, 81)
    assert (g.frames, g.height, g.width, g.tokens) == (21, 30, 52, 32760)
    assert published_geometry("Wan 2.2 5B", 1280, 704, 121).tokens == 31 * 22 * 40
    # one Wan 2.1 1.3B block: its 1.42B parameters are nearly all in its 30 blocks
    assert 1.35e9 < 30 * wan_block_params(1536, 8960) < 1.42e9
