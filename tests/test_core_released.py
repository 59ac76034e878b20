"""flow_definition 'released' (fastvmt_core/released_flow.py): each quirk on synthetic data
with a known answer, the one entry point ``guidance_loss`` for both definitions, and the
agreement with the authors' released functions run as written (tests/helpers/released.py)."""

import pytest
import torch

from fastvmt_core import (FastVMTSettings, MotionFlow, flow_guidance_loss, guidance_loss, motion_flow, optimize_latent,
                          released_flow, released_head_mean, released_lr)
from fastvmt_core.released_flow import released_amf_loss, released_window_loss
from tests.helpers.released import ReleasedPipeline, require_released, tile_major_to_grid
from tests.helpers.synthetic import translating_features


def released(**kw):
    return FastVMTSettings(flow_definition="released", **{"temporal_span": 4, **kw})


# ---- the quirks, with known answers ------------------------------------------------------

def test_windowed_displacement_is_window_index_minus_tile_index_with_odd_slots_zeroed():
    """Uniform attention (q = 0): every window slot is equally likely, so the expected slot
    position is the mean of the slot coordinates with the odd slots zeroed (26/25 for a 5 x 5
    window), and the displacement subtracts the token's index inside its 3 x 4 tile."""
    q = torch.zeros(2, 6, 8, 4)
    k = torch.randn(2, 6, 8, 4, generator=torch.Generator().manual_seed(0))
    flow = released_flow(q, k, temporal_span=2, window=5, tile=(3, 4))
    assert flow.pairs.tolist() == [[0, 0], [0, 1], [1, 1]]
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    expected = torch.stack([26 / 25 - ys % 3, 26 / 25 - xs % 4], dim=-1).float()
    torch.testing.assert_close(flow.displacement[1], expected)


def test_self_pair_is_full_attention_over_the_frame():
    """Quirk 4: the pair (i, i) is included; under uniform attention its expected position is
    the grid's mean position."""
    q = torch.zeros(1, 6, 8, 4)
    flow = released_flow(q, torch.randn(1, 6, 8, 4), temporal_span=4, window=5)
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(8), indexing="ij")
    expected = torch.stack([2.5 - ys, 3.5 - xs], dim=-1).float()
    assert flow.pairs.tolist() == [[0, 0]]
    torch.testing.assert_close(flow.displacement[0], expected)


def test_window_coordinates_are_clamped_to_the_inner_rows():
    """Quirk 2: on the 30-row grid every window coordinate is clamped to [10, 19]. The keys'
    head mean is set to the token's row, so the slot keys are the gathered rows."""
    rows = torch.arange(30).float().view(1, 30, 1, 1).expand(2, 30, 52, 8)
    flow = released_flow(torch.zeros(2, 30, 52, 8), rows.clone(), temporal_span=2, window=21)
    gathered = flow.window_keys[1]  # pair (0, 1)
    assert gathered.min().item() == 10 and gathered.max().item() == 19


def test_pair_weights_and_token_sum_of_the_flow_loss():
    """Quirk 5: squared error summed over tokens, weighted linspace(1, 0.8, span), mean over pairs."""
    pairs = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 1], [1, 2], [2, 2]])
    ref = MotionFlow(pairs, torch.zeros(6, 3, 4, 2), None, (3, 3, 4))
    disp = torch.zeros(6, 3, 4, 2)
    disp[..., 1] = 2.0  # squared error 4 on each of 12 tokens: 48 per pair
    gen = MotionFlow(pairs, disp, None, (3, 3, 4))
    weights = [1.0, 0.9, 0.8, 1.0, 0.9, 1.0]  # span 3: offsets 0, 1, 2
    assert released_amf_loss(ref, gen, span=3).item() == pytest.approx(48 * sum(weights) / 6)


def test_tracking_loss_is_a_mean_per_source_frame_then_over_frames():
    """Quirk 6: slot-key changes between consecutive windowed targets, L2 over slots, mean per
    source frame, then over the frames that have two targets."""
    pairs = torch.tensor([[0, 0], [0, 1], [0, 2], [0, 3], [1, 1], [1, 2], [1, 3], [2, 2], [2, 3], [3, 3]])
    keys = torch.zeros(10, 1, 4)
    keys[2, 0, 0], keys[3, 0, 0] = 3.0, 3.0   # frame 0: changes 3 then 0 -> mean 1.5
    keys[6, 0, :] = 1.0                        # frame 1: one change of norm 2 -> 2
    flow = MotionFlow(pairs, torch.zeros(10, 3, 4, 2), keys, (4, 3, 4))
    assert released_window_loss(flow).item() == pytest.approx((1.5 + 2.0) / 2)


def test_released_head_mean_mixes_neighbouring_tokens():
    """Quirk 9: [S, heads, d] read as [S / heads, heads, heads * d]: token t gets head t % heads
    averaged over the tokens of its group of `heads`."""
    x = torch.randn(1, 6, 2, 3, generator=torch.Generator().manual_seed(1))
    out = released_head_mean(x)
    for t in range(6):
        group = slice(t // 2 * 2, t // 2 * 2 + 2)
        torch.testing.assert_close(out[0, t], x[0, group, t % 2].mean(0))
    with pytest.raises(ValueError, match="not divisible by 4 heads"):
        released_head_mean(torch.zeros(1, 6, 4, 3))


def test_bf16_latent_never_moves_its_large_entries_and_the_lr_ends_above_lr_end():
    """Quirk 7: an AdamW step of 0.003 is below half of bf16's spacing above 1 (2^-8), so it rounds away."""
    x = torch.tensor([0.01, 0.5, 1.5, 3.0, -2.0])
    out, _ = optimize_latent(x, lambda v: v.sum(), steps=10, interval=3, dtype=torch.bfloat16,
                             lr_schedule=released_lr, weight_decay=0.01)
    assert out[2:].tolist() == x[2:].tolist()
    assert (out[:2] != x[:2]).all()
    assert released_lr(9, 10, 0.003, 0.002) == pytest.approx(0.0021)
    zero, _ = optimize_latent(x, lambda v: v.sum(), steps=10, lr_start=0.0, lr_end=0.0, dtype=torch.bfloat16)
    assert torch.equal(zero, x)  # the zero-lr invariant holds in bf16 too


@pytest.mark.parametrize("grid, tile, window, message", [
    ((6, 9), (3, 4), 5, "not divisible by the tile"),
    ((6, 8), (3, 4), 7, "larger than the token grid"),
    ((24, 24), (3, 4), 20, "window must be odd"),
])
def test_grids_the_released_code_cannot_compute_are_refused_by_name(grid, tile, window, message):
    q = torch.randn(2, *grid, 4)
    with pytest.raises(ValueError, match=message):
        released_flow(q, q, temporal_span=2, window=window, tile=tile)


def test_released_refuses_settings_it_has_no_code_for():
    with pytest.raises(ValueError, match="mode AMF"):
        FastVMTSettings(flow_definition="released", mode="AMF")
    with pytest.raises(ValueError, match="motion_strength and transfer"):
        FastVMTSettings(flow_definition="released", transfer="camera")
    with pytest.raises(ValueError, match="flow_definition must be one of paper, released"):
        FastVMTSettings(flow_definition="authors")


# ---- the entry point ------------------------------------------------------------------------

@pytest.mark.parametrize("definition", ["paper", "released"])
def test_guidance_loss_has_no_flow_part_at_the_reference_and_a_gradient_elsewhere(definition):
    s = FastVMTSettings(flow_definition=definition, window=7, temporal_span=3)
    ref = translating_features(4, 9, 12, 8, (1, 1), seed=0)
    flow = motion_flow(s, ref, ref)
    at_ref, parts = flow_guidance_loss(s, flow, flow)
    assert parts["amf"] == 0.0
    assert guidance_loss(s, ref, ref, ref, ref).item() == pytest.approx(at_ref.item())
    gen_q = translating_features(4, 9, 12, 8, (0, 1), seed=0).requires_grad_(True)
    gen_k = gen_q.detach().clone().requires_grad_(True)
    total = guidance_loss(s, ref, ref, gen_q, gen_k)
    total.backward()
    assert total.item() > at_ref.item()
    assert gen_q.grad.abs().sum() > 0 and gen_k.grad.abs().sum() > 0


def test_the_two_definitions_are_different_objectives():
    """Same queries/keys, two definitions: their gradients point different ways."""
    ref = translating_features(5, 24, 24, 16, (1, 2), seed=3)
    grads = []
    for definition in ("paper", "released"):
        s = FastVMTSettings(flow_definition=definition, temporal_span=4, window=21)
        gen = translating_features(5, 24, 24, 16, (0, 0), seed=3).requires_grad_(True)
        guidance_loss(s, ref, ref, gen, gen).backward()
        grads.append(gen.grad.flatten())
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    assert abs(cos) < 0.9, f"paper and released gradients nearly parallel (cos {cos:.3f})"


# ---- agreement with the authors' code, run as written ------------------------------------

GRIDS = [(6, 24, 24, 16), (5, 30, 52, 32), (4, 45, 80, 16)]  # 30 x 52: 480x832; 45 x 80: 720x1280


def _qk(shape, seed):
    """Half moving texture, half noise: windows move, and attention is neither one-hot nor flat."""
    f, h, w, d = shape
    tex = translating_features(f, h, w, d, (1, 2), seed=seed, scale=1.0)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 100))
    return tex + noise, tex + 0.5 * noise


def _released_side(root, ref, gen, dtype):
    f = ref[0].shape[0]
    pipe = ReleasedPipeline(root, f, 4)
    ref_amf, _ = pipe.compute_tile_AMF(ref[0].to(dtype), ref[1].to(dtype), sf=4, l=21, tau=1.0, tile=(3, 4))
    q = gen[0].to(dtype).clone().requires_grad_(True)
    k = gen[1].to(dtype).clone().requires_grad_(True)
    amf, track = pipe.compute_tile_AMF(q, k, sf=4, l=21, tau=1.0, tile=(3, 4))
    loss = 5 * pipe.compute_tile_amf_loss(ref_amf, amf) + track
    loss.backward()
    return amf.detach(), loss.detach(), q.grad, k.grad


def _ours(ref, gen, dtype):
    q = gen[0].to(dtype).clone().requires_grad_(True)
    k = gen[1].to(dtype).clone().requires_grad_(True)
    loss = guidance_loss(released(), ref[0].to(dtype), ref[1].to(dtype), q, k)
    loss.backward()
    return released_flow(gen[0].to(dtype), gen[1].to(dtype), temporal_span=4), loss.detach(), q.grad, k.grad


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("shape", GRIDS, ids=lambda s: f"{s[1]}x{s[2]}")
def test_flows_losses_and_gradients_equal_the_released_code(shape):
    """fp32: within 1e-5 relative (the released code's own fp32-vs-fp64 error is about 2e-6);
    fp64: the same function to 1e-9 (its tracking loss casts to fp32, hence not 1e-14 for k)."""
    root = require_released()
    ref, gen = _qk(shape, seed=1), _qk(shape, seed=2)
    f, h, w, _ = shape
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-9)):
        amf, loss_r, gq_r, gk_r = _released_side(root, ref, gen, dtype)
        flow, loss_o, gq_o, gk_o = _ours(ref, gen, dtype)
        rows = [amf[p].reshape(h, w, 2) if i == j else tile_major_to_grid(amf[p], h, w)
                for p, (i, j) in enumerate(flow.pairs.tolist())]
        assert _rel(flow.displacement, torch.stack(rows)) < tol, f"{dtype}: flows differ"
        assert abs(loss_o.item() - loss_r.item()) / abs(loss_r.item()) < tol, f"{dtype}: losses differ"
        assert _rel(gq_o, gq_r) < tol and _rel(gk_o, gk_r) < tol, f"{dtype}: gradients differ"
