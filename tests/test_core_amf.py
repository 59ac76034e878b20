"""Motion flow on synthetic features with known motion (no ComfyUI)."""

import math

import pytest
import torch

from fastvmt_core import frame_pairs, global_amf, sliding_window_amf
from tests.helpers.synthetic import translating_features


def in_frame_mask(flow, velocity_field, margin=(0, 0)):
    """Tokens whose true match lies inside the target frame (at least ``margin`` from
    its border), per pair: [P, H, W]. A margin of one tile keeps out tokens whose
    tile centre matches outside the frame, where the window is placed from a guess."""
    f, h, w = flow.grid
    my, mx = margin
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    off = flow.offsets.view(-1, 1, 1).float()
    ty = ys + off * velocity_field[..., 0]
    tx = xs + off * velocity_field[..., 1]
    return (ty >= my) & (ty <= h - 1 - my) & (tx >= mx) & (tx <= w - 1 - mx)


@pytest.mark.parametrize("velocity", [(1, 2), (0, -1), (-2, 1)])
def test_sliding_window_recovers_uniform_translation(velocity):
    q = translating_features(5, 12, 17, 32, velocity)
    flow = sliding_window_amf(q, q, temporal_span=3, window=9, tile=(3, 4))
    expected = torch.tensor(velocity, dtype=torch.float32) * flow.offsets.view(-1, 1, 1, 1).float()
    field = torch.tensor(velocity, dtype=torch.float32).expand(12, 17, 2)
    mask = in_frame_mask(flow, field, margin=(3, 4))
    err = (flow.displacement - expected).norm(dim=-1)
    assert mask.sum() > 100
    assert err[mask].max() < 0.05


def test_two_regions_moving_apart():
    h, w = 16, 24
    right = translating_features(4, h, w, 32, (0, 1), seed=1)
    left = translating_features(4, h, w, 32, (0, -1), seed=2)
    q = right.clone()
    q[:, h // 2:] = left[:, h // 2:]
    field = torch.zeros(h, w, 2)
    field[: h // 2, :, 1] = 1.0
    field[h // 2:, :, 1] = -1.0
    flow = sliding_window_amf(q, q, temporal_span=2, window=11, tile=(3, 4))
    mask = in_frame_mask(flow, field, margin=(3, 4))
    # Keep away from the boundary row between regions, where the tile's window is shared.
    mask[:, h // 2 - 2: h // 2 + 2] = False
    expected = field.unsqueeze(0) * flow.offsets.view(-1, 1, 1, 1).float()
    err = (flow.displacement - expected).norm(dim=-1)
    assert err[mask].max() < 0.05
    top = flow.displacement[:, : h // 2 - 2, :, 1][mask[:, : h // 2 - 2]]
    bottom = flow.displacement[:, h // 2 + 2:, :, 1][mask[:, h // 2 + 2:]]
    assert top.mean() > 0.9 and bottom.mean() < -0.9


def test_agrees_with_global_where_window_contains_match():
    q = translating_features(4, 14, 20, 32, (1, -1), seed=3)
    k = q + 0.05 * torch.randn(q.shape, generator=torch.Generator().manual_seed(9))
    sw = sliding_window_amf(q, k, temporal_span=3, window=11)
    gl = global_amf(q, k, temporal_span=3)
    assert torch.equal(sw.pairs, gl.pairs)
    field = torch.tensor([1.0, -1.0]).expand(14, 20, 2)
    mask = in_frame_mask(sw, field, margin=(3, 4))
    assert (sw.displacement - gl.displacement).norm(dim=-1)[mask].max() < 1e-3


def test_window_larger_than_grid_equals_global():
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(3, 5, 7, 16, generator=g), torch.randn(3, 5, 7, 16, generator=g)
    sw = sliding_window_amf(q, k, temporal_span=2, window=99, tile=(2, 3))
    gl = global_amf(q, k, temporal_span=2)
    torch.testing.assert_close(sw.displacement, gl.displacement, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("grid", [(23, 40), (7, 5), (1, 1), (4, 13)])
def test_every_token_gets_a_displacement_on_odd_grids(grid):
    """Grids not divisible by the tile (23 x 40 is source.mp4's native token grid)."""
    h, w = grid
    q = translating_features(3, h, w, 32, (0, 0), seed=5)
    flow = sliding_window_amf(q, q + 0.01, temporal_span=5, window=21, tile=(3, 4))
    assert flow.displacement.shape == (3, h, w, 2)  # pairs (0,1), (1,2), (0,2)
    assert torch.isfinite(flow.displacement).all()
    # Identical content: every token, edge tiles included, stays where it is.
    assert flow.displacement.abs().max() < 0.05
    n_tiles = math.ceil(h / 3) * math.ceil(w / 4)
    assert flow.window_keys.shape == (3, n_tiles, 32)


def test_frames_fewer_than_span_and_single_frame():
    g = torch.Generator().manual_seed(6)
    q = torch.randn(3, 6, 6, 8, generator=g)
    flow = sliding_window_amf(q, q, temporal_span=5)
    assert flow.pairs.tolist() == [[0, 1], [1, 2], [0, 2]]
    single = sliding_window_amf(q[:1], q[:1], temporal_span=5)
    assert single.pairs.shape == (0, 2) and single.displacement.shape == (0, 6, 6, 2)
    assert global_amf(q[:1], q[:1]).pairs.shape == (0, 2)


def test_pairs_cost_grows_linearly_with_span():
    assert len(frame_pairs(21, 5)) == 20 + 19 + 18 + 17 + 16
    assert len(frame_pairs(21, None)) == 21 * 20 // 2
    assert frame_pairs(4, None) == [(0, 1), (1, 2), (2, 3), (0, 2), (1, 3), (0, 3)]


def test_gradients_reach_q_and_k():
    g = torch.Generator().manual_seed(7)
    q = torch.randn(4, 9, 10, 16, generator=g, requires_grad=True)
    k = torch.randn(4, 9, 10, 16, generator=g, requires_grad=True)
    flow = sliding_window_amf(q, k, temporal_span=2, window=5)
    (flow.displacement.pow(2).sum() + flow.window_keys.sum()).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is not None and k.grad.abs().sum() > 0


def test_whole_frame_window_gradient_matches_global_amf():
    """A window covering the whole frame makes the sliding-window flow the global flow, so the
    window pass's hand-written backward must give plain autograd's gradient of global_amf."""
    g = torch.Generator().manual_seed(8)
    q0 = torch.randn(3, 6, 8, 8, generator=g)
    k0 = torch.randn(3, 6, 8, 8, generator=g)
    q1, k1 = q0.clone().requires_grad_(), k0.clone().requires_grad_()
    sliding_window_amf(q1, k1, temporal_span=2, window=99).displacement.sum().backward()
    q2, k2 = q0.clone().requires_grad_(), k0.clone().requires_grad_()
    global_amf(q2, k2, temporal_span=2).displacement.sum().backward()
    torch.testing.assert_close(q1.grad, q2.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(k1.grad, k2.grad, atol=1e-5, rtol=1e-4)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[F, H, W, D\]"):
        sliding_window_amf(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="window"):
        sliding_window_amf(torch.zeros(2, 3, 4, 5), torch.zeros(2, 3, 4, 5), window=0)


def test_window_attention_backward_passes_gradcheck():
    """The hand-written backward of the window pass (super-tiles with masks), in float64, chunked and not."""
    from fastvmt_core.amf import WindowAttention
    g = torch.Generator().manual_seed(10)
    b, hw, t, groups, s, l, d = 3, 12, 2, 2, 3, 4, 5
    q_tiles = torch.randn(b, t, groups * s, d, generator=g, dtype=torch.float64, requires_grad=True)
    k_flat = torch.randn(b, hw, d, generator=g, dtype=torch.float64, requires_grad=True)
    key_index = torch.randint(0, hw, (b, t, l), generator=g)
    win_pos = torch.randn(b, t, l, 2, generator=g, dtype=torch.float64)
    mask = torch.rand(b, t, groups, l, generator=g) < 0.7
    mask[..., 0] = True  # every query sees at least one key
    for chunk in (1, 2, 8):
        assert torch.autograd.gradcheck(
            lambda qq, kk: WindowAttention.apply(qq, kk, key_index, win_pos, mask, 0.7, chunk), (q_tiles, k_flat))


def test_super_tiles_equal_per_tile_windows():
    """Grouping tiles to share a gathered box must not change any displacement."""
    import fastvmt_core.amf as amf
    g = torch.Generator().manual_seed(11)
    q = torch.randn(4, 23, 40, 16, generator=g, requires_grad=True)
    k = torch.randn(4, 23, 40, 16, generator=g, requires_grad=True)
    results = []
    saved = amf.SUPER_TILE
    try:
        for st in ((1, 1), (2, 3), (3, 3)):
            amf.SUPER_TILE = st
            flow = sliding_window_amf(q, k, temporal_span=3, window=9)
            grads = torch.autograd.grad(flow.displacement.pow(2).sum(), (q, k))
            results.append((flow.displacement.detach(), grads))
    finally:
        amf.SUPER_TILE = saved
    for disp, grads in results[1:]:
        torch.testing.assert_close(disp, results[0][0], atol=1e-4, rtol=1e-5)
        for a, b in zip(grads, results[0][1]):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
