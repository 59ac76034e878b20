"""Guidance over frame windows (fastvmt_core/frame_windows.py), on synthetic tensors with
known answers: the window-by-window gradient equals the gradient of the mean of the window
losses taken at once, and windows that cannot carry the flow are named."""
from __future__ import annotations

import pytest
import torch

from fastvmt_core import window_problem, windowed_loss
from bench.context_windows import static_windows   # checked against ComfyUI's own schedule in the host tests


def _loss(target):
    def loss_of_window(sub, index, frames):
        t = target[:, :, frames]
        return ((sub - t) ** 3).abs().mean() + (index + 1) * sub.pow(2).mean(), {"amf": float(index), "window": 1.0}
    return loss_of_window


def test_window_by_window_gradient_equals_the_joint_gradient():
    torch.manual_seed(0)
    param = torch.randn(1, 3, 9, 4, 5, requires_grad=True)
    target = torch.randn(1, 3, 9, 4, 5)
    windows = [list(range(0, 6)), list(range(3, 9))]
    f = _loss(target)
    x = param * 1.5 + 0.25     # a graph in front, as held entries and masks put there
    loss, parts = windowed_loss(x, windows, lambda sub, i: f(sub, i, windows[i]))
    (g,) = torch.autograd.grad(loss, param)
    x2 = param * 1.5 + 0.25
    joint = sum(f(x2[:, :, w], i, w)[0] for i, w in enumerate(windows)) / len(windows)
    (g2,) = torch.autograd.grad(joint, param)
    assert torch.allclose(loss.detach(), joint.detach(), atol=1e-6)
    assert torch.allclose(g, g2, atol=1e-6)
    assert parts == {"amf": 0.5, "window": 1.0}
    # frames in both windows get both windows' gradients; the others one
    assert float(g[:, :, 3:6].abs().sum()) > 0 and float(g[:, :, :3].abs().sum()) > 0


def test_each_window_is_evaluated_after_the_previous_ones_backward_and_between_can_abort():
    seen = []

    def loss_of_window(sub, i):
        seen.append((i, sub.shape[2]))
        return sub.sum(), {}

    def between():
        if len(seen) == 1:
            raise KeyboardInterrupt   # what ComfyUI's interrupt raises mid-run, here between windows

    with pytest.raises(KeyboardInterrupt):
        windowed_loss(torch.zeros(1, 1, 7, 2, 2, requires_grad=True), [[0, 1, 2, 3], [3, 4, 5, 6]], loss_of_window,
                      between)
    assert seen == [(0, 4)]


@pytest.mark.parametrize("windows,frames,span,words", [
    ([[0, 2, 4, 6], [1, 3, 5, 7]], 8, 2, "not consecutive"),
    ([[0, 1, 2], [2, 3, 4]], 5, 3, "shorter than one temporal span"),
    ([[0, 1, 2, 3, 4, 5], [4, 5, 6, 7, 8, 9]], 10, 3, "overlap by 2 latent frames, fewer than the temporal span"),
    ([[0, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11, 12]], 13, 3, "cover latent frames"),
])
def test_windows_that_cannot_carry_the_flow_are_named(windows, frames, span, words):
    assert words in (window_problem(windows, frames, span) or "")


def test_wan_context_defaults_carry_the_default_span():
    # WAN Context Windows defaults: 81 frames (21 latent), overlap 30 (8 latent); 161 frames = 41 latent
    windows = static_windows(41, 21, 8)
    assert len(windows) == 3 and window_problem(windows, 41, 5) is None
    assert "fewer than the temporal span" in window_problem(static_windows(41, 21, 2), 41, 5)
