"""The model check's references and scores (bench.check_model_refs, bench.check_model's
scores) on synthetic motion with known answers; no model, no host."""
from __future__ import annotations

import math

import pytest
import torch

from bench import check_model_refs as refs
from bench import shapes_v2
from fastvmt_core import frame_pairs
from tests.helpers.clips import texture_clip


def test_classical_motion_reads_a_known_pan_in_tokens_per_latent_pair():
    frames = texture_clip(17, 96, 160, 1)          # 1 px per video frame, to the left
    pairs = frame_pairs(5, 2)
    got = refs.classical_motion(frames, pairs, token_px=16)
    assert got.shape == (len(pairs), 6, 10, 2)
    for n, (i, j) in enumerate(pairs):
        video_frames = refs.latent_frame_pixel(j) - refs.latent_frame_pixel(i)
        assert got[n, 1:-1, 1:-1, 1].mean() == pytest.approx(-video_frames / 16, abs=0.03)   # dx, tokens
        assert got[n, 1:-1, 1:-1, 0].abs().mean() < 0.03                                     # no dy


def test_texture_truth_is_the_rule_the_texture_moves_by():
    ref = refs.texture_reference("translation", 0, 3, frames=5, size=(16, 24), channels=16)
    pairs = frame_pairs(5, 3)
    assert ref.truth.shape == (len(pairs), 8, 12, 2)
    steps = torch.tensor([j - i for i, j in pairs], dtype=torch.float32)
    dy, dx = refs.TEXTURE_MOTIONS["translation"]
    assert torch.allclose(ref.truth[..., 0], (dy / 2 * steps)[:, None, None].expand(-1, 8, 12))
    assert torch.allclose(ref.truth[..., 1], (dx / 2 * steps)[:, None, None].expand(-1, 8, 12))
    assert torch.equal(ref.still[:, :, 3], ref.latent[:, :, 0]) and ref.still.shape == ref.latent.shape


def test_camera_truth_of_a_pure_pan_is_the_shift_between_the_frames():
    size, frames = 16, 4
    shift = torch.tensor([[0.0, 0.0], [2.0, -1.0], [4.0, -2.0], [6.0, -3.0]])[None]      # x, y per frame
    cam = shapes_v2.camera_matrices(torch.ones(1, frames), torch.zeros(1, frames), shift, size)[0]
    pairs = frame_pairs(frames, 2)
    disp = refs.camera_motion(cam, pairs, size)
    for n, (i, j) in enumerate(pairs):
        assert torch.allclose(disp[n], (shift[0, j] - shift[0, i]).expand(size, size, 2), atol=1e-5)
    tokens = refs.pixels_to_tokens(disp)
    assert torch.allclose(tokens[0, 0, 0], torch.tensor([-0.5, 1.0]))    # (dy, dx) in 2-pixel tokens


def test_a_shape_moves_its_own_pixels_and_leaves_the_background_to_the_camera():
    size = 16
    paths = torch.tensor([[[4.5, 8.5], [10.5, 8.5]]])            # one shape, 6 px to the right
    background = torch.zeros(1, size, size, 2)
    disp = refs.shapes_motion(background, torch.tensor([0]), paths, torch.tensor([2.5]),
                              torch.tensor([True]), [(0, 1)], size)
    assert torch.allclose(disp[0, 8, 4], torch.tensor([6.0, 0.0]))           # under the circle in frame 0
    assert torch.equal(disp[0, 0, 15], torch.zeros(2)) and torch.equal(disp[0, 8, 12], torch.zeros(2))


def test_scores_leave_out_tokens_whose_motion_leaves_the_frame():
    truth = torch.zeros(1, 4, 4, 2)
    truth[..., 1] = 1.5                                                     # everything moves right by 1.5
    keep = refs.inside(truth)
    assert keep[0, :, :2].all() and not keep[0, :, 3].any()


def test_motion_part_scores_are_cosine_and_end_point_error():
    from bench.check_model import motion_scores
    truth = torch.zeros(2, 6, 6, 2)
    truth[..., 1] = 1.0
    still = torch.full_like(truth, 0.25)                                    # a bias every input shares
    m = motion_scores(still + truth, still, truth)
    assert m["cosine"] == pytest.approx(1.0) and m["epe"] == pytest.approx(0.0, abs=1e-6)
    assert m["bias"] == pytest.approx(math.hypot(0.25, 0.25))
    flipped = motion_scores(still - truth, still, truth)
    assert flipped["cosine"] == pytest.approx(-1.0) and flipped["epe"] == pytest.approx(2.0)
