"""Losses, the skip-step optimizer, the schedule and settings validation (no ComfyUI)."""

import math

import pytest
import torch

from fastvmt_core import (FastVMTSettings, MotionFlow, amf_loss, guided_end_percent, guided_prefix, offset_weights,
                          optimize_latent, reference_sigma, sliding_window_amf, total_loss, uniform_percents,
                          window_loss)


def random_qk(seed, shape=(4, 6, 8, 16), requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(shape, generator=g).requires_grad_(requires_grad)
    k = torch.randn(shape, generator=g).requires_grad_(requires_grad)
    return q, k


# ---- losses ---------------------------------------------------------------------------

def test_amf_loss_zero_for_identical_flows_positive_otherwise():
    q, k = random_qk(0)
    ref = sliding_window_amf(q, k, temporal_span=3, window=5)
    assert amf_loss(ref, ref).item() == 0.0
    other = sliding_window_amf(*random_qk(1), temporal_span=3, window=5)
    assert amf_loss(ref, other).item() > 0.0


def test_amf_loss_known_value_and_offset_weights():
    pairs = torch.tensor([[0, 1], [1, 2], [0, 2]])
    ref = MotionFlow(pairs, torch.zeros(3, 2, 2, 2), None, (3, 2, 2))
    disp = torch.zeros(3, 2, 2, 2)
    disp[:, ..., 0] = 1.0  # squared error 1 on every token of every pair
    gen = MotionFlow(pairs, disp, None, (3, 2, 2))
    w = offset_weights(gen.offsets, alpha=0.2)
    assert w.tolist() == pytest.approx([1.0, 1.0, 0.8])
    assert amf_loss(ref, gen, alpha=0.2).item() == pytest.approx((1 + 1 + 0.8) / 3)


def test_amf_loss_does_not_backpropagate_into_reference():
    qr, kr = random_qk(2, requires_grad=True)
    qg, kg = random_qk(3, requires_grad=True)
    ref = sliding_window_amf(qr, kr, temporal_span=2, window=5)
    gen = sliding_window_amf(qg, kg, temporal_span=2, window=5)
    amf_loss(ref, gen).backward()
    assert qr.grad is None and kr.grad is None
    assert qg.grad.abs().sum() > 0 and kg.grad.abs().sum() > 0


def test_amf_loss_rejects_mismatched_flows():
    a = sliding_window_amf(*random_qk(0), temporal_span=2)
    b = sliding_window_amf(*random_qk(0), temporal_span=3)
    with pytest.raises(ValueError, match="different frame pairs"):
        amf_loss(a, b)


def test_window_loss_known_value_and_gradient():
    pairs = torch.tensor([[0, 1], [1, 2], [0, 2]])
    wk = torch.zeros(3, 1, 2)
    wk[2, 0] = torch.tensor([3.0, 4.0])  # (0,2) differs from (0,1) by a vector of norm 5
    flow = MotionFlow(pairs, torch.zeros(3, 1, 1, 2), wk, (3, 1, 1))
    # Only source frame 0 has consecutive targets (1 then 2): one difference of norm 5.
    assert window_loss(flow).item() == pytest.approx(5.0)
    q, k = random_qk(4, requires_grad=True)
    gen = sliding_window_amf(q, k, temporal_span=3, window=5)
    loss = window_loss(gen)
    assert loss.dtype == torch.float32 and loss.item() > 0
    loss.backward()
    assert k.grad.abs().sum() > 0


def test_window_loss_zero_for_constant_keys_and_global_flow():
    q = torch.randn(4, 5, 5, 8)
    k = torch.ones(4, 5, 5, 8)
    assert window_loss(sliding_window_amf(q, k, temporal_span=3, window=3)).item() == 0.0
    from fastvmt_core import global_amf
    assert window_loss(global_amf(q, q)).item() == 0.0


def test_total_loss_weights():
    q, k = random_qk(5)
    ref = sliding_window_amf(q, k, temporal_span=3, window=5)
    gen = sliding_window_amf(*random_qk(6), temporal_span=3, window=5)
    total, parts = total_loss(ref, gen, lambda_amf=5.0, lambda_window=1.0)
    assert total.item() == pytest.approx(5 * parts["amf"] + parts["window"], rel=1e-5)


# ---- optimizer ------------------------------------------------------------------------

def quadratic(target):
    return lambda x: ((x - target) ** 2).sum()


@pytest.mark.parametrize("steps,interval", [(10, 3), (10, 1), (10, 4), (7, 7), (1, 3)])
def test_gradient_evaluations_are_ceil_steps_over_interval(steps, interval):
    calls = []

    def loss_fn(x):
        calls.append(1)
        return (x ** 2).sum()

    _, stats = optimize_latent(torch.ones(3), loss_fn, steps=steps, interval=interval)
    assert stats.gradient_evaluations == len(calls) == math.ceil(steps / interval)
    assert stats.evaluated_steps == list(range(0, steps, interval))
    assert stats.steps_taken == steps and len(stats.losses) == len(calls)
    assert stats.wall_time > 0


def test_reduces_a_quadratic_with_skipping():
    target = torch.full((2, 3), 0.5)
    x0 = torch.zeros(2, 3)
    x, stats = optimize_latent(x0, quadratic(target), steps=30, interval=3, lr_start=0.05, lr_end=0.02)
    assert quadratic(target)(x) < quadratic(target)(x0)
    assert stats.losses[-1] < stats.losses[0]
    assert torch.equal(x0, torch.zeros(2, 3))  # the input is not modified


def test_interval_one_matches_plain_adamw():
    target = torch.tensor([1.0, -2.0, 3.0])
    x, _ = optimize_latent(torch.zeros(3), quadratic(target), steps=6, interval=1, lr_start=0.1, lr_end=0.05)
    p = torch.zeros(3, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=0.1)
    for j in range(6):
        opt.param_groups[0]["lr"] = 0.1 + (0.05 - 0.1) * j / 5
        opt.zero_grad()
        quadratic(target)(p).backward()
        opt.step()
    torch.testing.assert_close(x, p.detach())


def test_skipped_steps_reuse_the_cached_gradient():
    """With interval 3 the optimizer still takes every step, using the step-0 gradient."""
    target = torch.tensor([1.0, -2.0])
    x, _ = optimize_latent(torch.zeros(2), quadratic(target), steps=3, interval=3, lr_start=0.1, lr_end=0.1)
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=0.1)
    g0 = 2 * (torch.zeros(2) - target)
    for _ in range(3):
        p.grad = g0.clone()
        opt.step()
    torch.testing.assert_close(x, p.detach())


def test_non_finite_loss_keeps_last_good_latent():
    seen = []

    def loss_fn(x):
        seen.append(1)
        return (x ** 2).sum() * (float("nan") if len(seen) == 3 else 1.0)

    x, stats = optimize_latent(torch.ones(4), loss_fn, steps=10, interval=1, lr_start=0.1, lr_end=0.1)
    assert torch.isfinite(x).all()
    assert stats.stopped_early and "non-finite loss" in stats.stop_reason
    assert stats.steps_taken == 2 and stats.gradient_evaluations == 2


def test_non_finite_gradient_stops():
    def loss_fn(x):
        return torch.sqrt(x - x.detach()).sum()  # d/dx sqrt(0) = inf

    x, stats = optimize_latent(torch.ones(2), loss_fn, steps=5, interval=1)
    assert torch.equal(x, torch.ones(2))
    assert stats.stopped_early and "non-finite gradient" in stats.stop_reason


def test_on_step_can_abort():
    class Stop(Exception):
        pass

    def on_step(j, stats, latent):
        if j == 1:
            raise Stop

    with pytest.raises(Stop):
        optimize_latent(torch.ones(2), quadratic(torch.zeros(2)), steps=10, on_step=on_step)


def test_on_step_sees_the_latent_being_optimised():
    seen = []
    x, _ = optimize_latent(torch.ones(2), quadratic(torch.zeros(2)), steps=4, interval=1, lr_start=0.1, lr_end=0.1,
                           on_step=lambda j, stats, latent: seen.append(latent.clone()))
    assert len(seen) == 4
    assert all(a.sum() > b.sum() for a, b in zip(seen, seen[1:]))  # moving towards the target 0
    assert torch.equal(seen[-1], x)


# ---- schedule -------------------------------------------------------------------------

@pytest.mark.parametrize("steps,fraction,count", [(50, 0.2, 10), (20, 0.2, 4), (30, 0.2, 6), (6, 0.2, 1),
                                                   (4, 0.2, 1), (3, 0.2, 1), (2, 0.2, 0), (10, 0.0, 0),
                                                   (10, 1.0, 10), (0, 0.2, 0), (8, 0.25, 2), (5, 0.3, 2)])
def test_guided_prefix_on_a_uniform_schedule_is_round_half_up(steps, fraction, count):
    """From full noise on a uniform schedule the guided share of the process is that share
    of the steps: 10 of 50 at 0.2 (the released code), halves rounded up."""
    assert guided_prefix(uniform_percents(steps), guided_end_percent(0.0, fraction)) == count


def test_guided_prefix_of_a_split_adds_up_to_the_whole():
    """Any split of a schedule into calls guides exactly the steps the whole call guides."""
    steps, end = 20, guided_end_percent(0.0, 0.2)
    percents = uniform_percents(steps)
    whole = guided_prefix(percents, end)
    for cut in range(1, steps):
        first = guided_prefix(percents[:cut + 1], end)
        second = guided_prefix(percents[cut:], end)
        assert first + second == whole == 4
        assert second == 0 or first == cut  # the second call only guides when the first guided all its steps


def test_guided_range_of_a_partial_denoise_is_a_share_of_what_remains():
    assert guided_end_percent(0.25, 0.2) == pytest.approx(0.4)
    percents = [0.25 + 0.75 * i / 10 for i in range(11)]  # 10 steps from 25% to the end
    assert guided_prefix(percents, guided_end_percent(0.25, 0.2)) == 2


def test_reference_sigma_is_capped():
    assert FastVMTSettings().reference_sigma_cap == 1.0      # default: the generation's own sigma
    assert reference_sigma(1.0, 0.9) == 0.9
    assert reference_sigma(0.5, 0.9) == 0.5
    assert reference_sigma(1.0, 1.0) == 1.0


def test_schedule_rejects_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        guided_end_percent(0.0, 1.5)


# ---- settings -------------------------------------------------------------------------

def test_settings_defaults_are_the_papers():
    s = FastVMTSettings()
    assert (s.motion_block, s.temporal_span, s.window, s.tile, s.tau) == (14, 5, 21, (3, 4), 1.0)
    assert (s.inner_steps, s.interval, s.lr_start, s.lr_end) == (10, 3, 0.003, 0.002)
    assert (s.lambda_amf, s.lambda_window, s.guided_fraction) == (5.0, 1.0, 0.2)
    assert s.guided and s.effective_interval == 3
    assert FastVMTSettings(mode="AMF").effective_interval == 1
    assert not FastVMTSettings(mode="No_transfer").guided


@pytest.mark.parametrize("field,value,message", [
    ("mode", "fast", "mode must be one of effi_AMF, AMF, No_transfer"),
    ("interval", 0, r"interval must be in \[1, 1000\]"),
    ("window", 2.5, "window must be an integer"),
    ("tau", 0.0, r"tau must be in"),
    ("guided_fraction", 1.2, r"guided_fraction must be in \[0.0, 1.0\]"),
    ("tile", (3,), r"tile must be \(rows, cols\)"),
    ("reference_noise", "none", "reference_noise must be one of renoise, clean"),
    ("temporal_span", 0, r"temporal_span must be in \[1, 64\]"),
])
def test_settings_validation_messages(field, value, message):
    with pytest.raises(ValueError, match=message):
        FastVMTSettings(**{field: value})


def test_settings_round_trip_and_unknown_keys():
    s = FastVMTSettings(window=11, tile=(2, 2))
    assert FastVMTSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown FastVMT setting"):
        FastVMTSettings.from_dict({"windw": 3})
    with pytest.raises(ValueError, match="nothing to optimise"):
        FastVMTSettings(lambda_amf=0, lambda_window=0)
    with pytest.raises(ValueError, match=r"exit_block must be -1 \(early exit\) or at least motion_block \(14\)"):
        FastVMTSettings(exit_block=5).check_exit_block()
    FastVMTSettings(exit_block=5, motion_block=3).check_exit_block()


def test_reference_noise_never_equals_the_noise_it_must_avoid():
    from fastvmt_core import reference_noise
    shape = (1, 4, 3, 4, 4)
    first = reference_noise(shape, 5)
    assert torch.equal(first, reference_noise(shape, 5))                      # fixed by its seed
    assert not torch.equal(reference_noise(shape, 5, avoid=first), first)
    batch = torch.cat([torch.randn(shape), first])                             # one entry of a batch
    assert not torch.equal(reference_noise(shape, 5, avoid=batch), first)
    assert torch.equal(reference_noise(shape, 5, avoid=torch.randn(shape)), first)   # nothing shared: as drawn


def test_reference_is_pure_noise_at_sigma_one_only():
    from fastvmt_core import reference_carries_motion
    assert not reference_carries_motion(1.0) and not reference_carries_motion(0.9995)
    assert reference_carries_motion(0.989) and reference_carries_motion(0.0)
