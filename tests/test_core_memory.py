"""The gradient-pass memory estimator (fastvmt_core/memory.py) on hand-counted cases.
Its agreement with peaks measured in real ComfyUI is tested in test_memory_host.py."""

import pytest

from fastvmt_core import FastVMTSettings, PassGeometry, gradient_pass_memory, most_kept_blocks, published_geometry
from fastvmt_core.memory import SAVED_PER_BLOCK_DIM, SAVED_PER_BLOCK_FFN, wan_block_params

G = PassGeometry(frames=3, height=4, width=6, dim=64, ffn_dim=256, num_heads=2, block_params=1000, act_bytes=4,
                 weight_bytes=2)
HIDDEN = 3 * 4 * 6 * 64 * 4
SAVED = SAVED_PER_BLOCK_DIM * HIDDEN + SAVED_PER_BLOCK_FFN * 3 * 4 * 6 * 256 * 4


def test_recompute_keeps_one_input_per_block_and_one_block_of_weight_copies():
    m = gradient_pass_memory(G, FastVMTSettings(motion_block=5), kept_blocks=0)
    assert m.kept_inputs == 5 * HIDDEN and m.block_weights == 1000 * 2
    assert m.total == m.kept_inputs + m.block_weights + max(m.motion_block + m.motion_flow, m.block_backward)


def test_keeping_activations_holds_every_block_and_its_weight_copies():
    s = FastVMTSettings(motion_block=5)
    kept = gradient_pass_memory(G, s, kept_blocks=5)
    assert kept.kept_inputs == 5 * SAVED and kept.block_weights == 5 * 1000 * 2
    assert kept.total > gradient_pass_memory(G, s, kept_blocks=0).total


def test_weights_read_in_place_cost_nothing_per_pass():
    g = PassGeometry(**{**G.__dict__, "weight_bytes": 0})
    for k in (0, 3, 5):
        assert gradient_pass_memory(g, FastVMTSettings(motion_block=5), kept_blocks=k).block_weights == 0


def test_part_kept_lies_between_none_and_all():
    s = FastVMTSettings(motion_block=5)
    part = gradient_pass_memory(G, s, kept_blocks=2)
    assert part.kept_inputs == 2 * SAVED + 3 * HIDDEN
    assert part.block_weights == 2 * 1000 * 2 + 1000 * 2      # two kept copies, one recomputed block's
    assert gradient_pass_memory(G, s, kept_blocks=0).total < part.total < gradient_pass_memory(G, s,
                                                                                              kept_blocks=5).total
    with pytest.raises(ValueError, match="kept_blocks"):
        gradient_pass_memory(G, s, kept_blocks=6)


def test_most_kept_blocks_is_the_largest_count_that_fits():
    s = FastVMTSettings(motion_block=5)
    totals = [gradient_pass_memory(G, s, kept_blocks=k).total for k in range(6)]
    assert most_kept_blocks(G, s, totals[5]) == 5
    assert most_kept_blocks(G, s, totals[3]) == 3
    assert most_kept_blocks(G, s, totals[3] - 1) == 2
    assert most_kept_blocks(G, s, 0) == 0


def test_modes_agree_when_the_motion_block_is_the_first():
    s = FastVMTSettings(motion_block=0)
    a = gradient_pass_memory(G, s, kept_blocks=0)
    assert a.kept_inputs == 0 and most_kept_blocks(G, s, 10**12) == 0


@pytest.mark.parametrize("kept", [0, 8])
def test_dit_part_grows_linearly_with_tokens_and_batch(kept):
    s = FastVMTSettings(motion_block=8)
    one = gradient_pass_memory(G, s, kept_blocks=kept)
    two = gradient_pass_memory(PassGeometry(**{**G.__dict__, "batch": 2}), s, kept_blocks=kept)
    assert two.kept_inputs == 2 * one.kept_inputs and two.block_backward == 2 * one.block_backward


def test_global_flow_needs_every_pair_and_the_window_flow_does_not():
    g = PassGeometry(frames=21, height=30, width=52, dim=1536, ffn_dim=8960, num_heads=12, block_params=1)
    window = gradient_pass_memory(g, FastVMTSettings(), kept_blocks=0).motion_flow
    full = gradient_pass_memory(g, FastVMTSettings(mode="AMF"), kept_blocks=0).motion_flow
    pairs = 21 * 20 // 2
    assert full >= pairs * (30 * 52) ** 2 * 4 > 5 * window


def test_published_geometry_matches_the_known_token_counts():
    g = published_geometry("Wan 2.1 1.3B", 832, 480, 81)
    assert (g.frames, g.height, g.width, g.tokens) == (21, 30, 52, 32760)
    assert published_geometry("Wan 2.2 5B", 1280, 704, 121).tokens == 31 * 22 * 40
    # one Wan 2.1 1.3B block: its 1.42B parameters are nearly all in its 30 blocks
    assert 1.35e9 < 30 * wan_block_params(1536, 8960) < 1.42e9
