"""fastvmt_core.cotracker: CoTracker3's offline network, for the motion fidelity metric.

No CoTracker weights can be downloaded here, so the network is checked on random weights:
against the released implementation (facebookresearch/co-tracker, checked out outside the
project like ComfyUI: COTRACKER_SOURCE, default ~/comfy/co-tracker; .ci/run fetches it and
sets FASTVMT_REQUIRE_COTRACKER_SOURCE=1 so the comparison cannot be skipped there), and on
what holds for any weights (query points, visibility, checkpoint checks)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastvmt_core.cotracker import (ONLINE_WINDOW, CoTracker3, CoTrackerPointTracker, grid_points, load_cotracker)
from fastvmt_core.fidelity import motion_fidelity_report
from tests.helpers.synthetic import random_weights


def cotracker_source() -> Path | None:
    root = Path(os.environ.get("COTRACKER_SOURCE") or Path.home() / "comfy" / "co-tracker").expanduser()
    return root if (root / "cotracker" / "predictor.py").is_file() else None


def random_clip(frames=4, h=60, w=80, seed=0):
    return np.random.default_rng(seed).random((frames, h, w, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def weights():
    return random_weights(1)


def test_same_tracks_as_the_released_cotracker3_on_the_same_random_weights(weights, tmp_path):
    src = cotracker_source()
    if src is None:
        msg = ("CoTracker's source not found (set COTRACKER_SOURCE or check out facebookresearch/co-tracker "
               "at ~/comfy/co-tracker)")
        if os.environ.get("FASTVMT_REQUIRE_COTRACKER_SOURCE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    sys.path.insert(0, str(src))  # the released CoTracker is a source checkout, not an installed package
    rng_state = torch.get_rng_state()
    try:
        from cotracker.predictor import CoTrackerPredictor  # seeds torch's RNG on import
        released = CoTrackerPredictor(checkpoint=None)
    finally:
        sys.path.remove(str(src))
        torch.set_rng_state(rng_state)
    expected = {k: tuple(v.shape) for k, v in released.model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in weights.items()} == expected  # the checkpoint's names and shapes

    # the released loader reads a saved file the same way ours does
    path = tmp_path / "scaled_offline.pth"
    torch.save(weights, path)
    released.model.load_state_dict(torch.load(path, weights_only=True))
    ours = CoTrackerPointTracker(load_cotracker(torch.load(path, weights_only=True)))

    frames = random_clip()
    points = np.array([[10.0, 12.0], [40.5, 30.25], [70.0, 50.0], [5.0, 55.0], [79.0, 0.0]], np.float32)
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None] * 255.0
    queries = torch.cat([torch.zeros(len(points), 1), torch.from_numpy(points)], dim=1)[None]
    want_pos, want_vis = released(video, queries=queries)
    pos, vis = ours.track(frames, points)
    want_pos, want_vis = want_pos[0].numpy().transpose(1, 0, 2), want_vis[0].numpy().T
    assert np.abs(want_pos[:, 1:] - points[:, None]).max() > 1.0   # the random tracker does move points
    assert want_vis.any() and not want_vis.all()                     # and hides some of them
    np.testing.assert_allclose(pos, want_pos, atol=1e-3)
    np.testing.assert_array_equal(vis, want_vis)


def test_query_points_start_where_asked_and_hidden_points_are_lost():
    frames = random_clip(frames=2)
    for bias, hidden in ((-30.0, True), (30.0, False)):
        tracker = CoTrackerPointTracker(load_cotracker(random_weights(2, visibility_bias=bias)), name="t")
        tracks = tracker(frames, 9)
        assert tracks.shape == (9, 2, 2)
        np.testing.assert_allclose(tracks[:, 0], grid_points(9, 60, 80), atol=1e-4)
        assert np.isnan(tracks[:, 1:]).all() == hidden and np.isfinite(tracks[:, 1:]).all() == (not hidden)


def test_grid_points_cover_the_frame_with_the_released_margin():
    pts = grid_points(400, 96, 128)
    assert pts.shape == (400, 2)
    assert pts[:, 0].min() == pytest.approx(2.0) and pts[:, 0].max() == pytest.approx(126.0)
    assert pts[:, 1].min() == pytest.approx(2.0) and pts[:, 1].max() == pytest.approx(94.0)
    assert grid_points(10, 96, 128).shape == (9, 2) and grid_points(1, 96, 128).tolist() == [[64.0, 48.0]]


def test_checkpoints_load_in_the_released_layout_and_others_are_named_errors(weights):
    assert isinstance(load_cotracker(weights), CoTracker3)
    assert isinstance(load_cotracker({"model": weights}), CoTracker3)   # wrapped, as some exports save it
    online = dict(weights, time_emb=torch.zeros(1, ONLINE_WINDOW, 1110))
    with pytest.raises(ValueError, match=r"scaled_online.pth|online checkpoint"):
        load_cotracker(online, name="scaled_online.pth")
    no_emb = {k: v for k, v in weights.items() if k != "time_emb"}
    with pytest.raises(ValueError, match=r"cotracker2.pth: not a CoTracker3 checkpoint"):
        load_cotracker(no_emb, name="cotracker2.pth")
    broken = {k: v for k, v in weights.items() if k != "corr_mlp.fc1.weight"}
    with pytest.raises(ValueError, match=r"x.pth: .*missing 1 \(e.g. corr_mlp.fc1.weight\).*models/cotracker"):
        load_cotracker(broken, name="x.pth")
    wrong = dict(weights, **{"fnet.conv3.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"wrong shape 1 \(e.g. fnet.conv3.bias\)"):
        load_cotracker(wrong, name="x.pth")


def test_fidelity_takes_its_tracks_from_the_tracker_given():
    """A tracker with known tracks: the generated clip's points move opposite to the
    reference's, so the score is the cosine of opposite motion, about -1."""
    ref, gen = random_clip(frames=5, seed=1), random_clip(frames=5, seed=2)
    path = np.stack([np.arange(5) * 2.0, np.arange(5) * 1.0], axis=-1)
    starts = grid_points(16, 60, 80)

    def known(frames, max_tracks):
        sign = 1.0 if frames is not None and np.array_equal(frames, ref) else -1.0
        return (starts[:, None] + sign * path[None]).astype(np.float32)
    known.name = "known"
    rep = motion_fidelity_report(ref, gen, tracker=known)
    assert rep.tracker == "known" and "tracker: known" in rep.summary()
    assert rep.n_reference_tracks == rep.n_generated_tracks == 16
    assert rep.score < -0.95
    assert motion_fidelity_report(ref, ref, tracker=known).score == pytest.approx(1.0)

    def broken(frames, max_tracks):
        return np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"tracker broken: returned shape \(3, 2\)"):
        motion_fidelity_report(ref, gen, tracker=broken)


def test_ranking_command_loads_a_cotracker_file_and_tracks_each_clip_once(tmp_path):
    """`python -m bench.fidelity_ranking ... --cotracker CHECKPOINT` (docs/motion_fidelity.md):
    the file (here a safetensors copy of random weights) becomes the tracker; the ranking
    tracks each distinct clip once (checked with a counting stand-in: the network's own
    tracking is covered above)."""
    from safetensors.torch import save_file
    from bench import fidelity_ranking
    path = tmp_path / "random.safetensors"
    save_file(random_weights(6), str(path))
    tracker = fidelity_ranking.cotracker_from_file(str(path))
    assert tracker.name == "CoTracker3 (random.safetensors)"
    assert isinstance(tracker.tracker, CoTrackerPointTracker)

    calls = []
    starts = grid_points(16, 60, 80)

    def counting(frames, max_tracks):  # follows the clip's mean brightness, enough to rank
        calls.append(frames.shape)
        level = frames.mean(axis=(1, 2, 3))
        return (starts[:, None] + np.stack([level * 40, level * 20], -1)[None]).astype(np.float32)
    tracker.tracker = counting
    clip = np.linspace(0, 1, 5, dtype=np.float32)[:, None, None, None] * np.ones((5, 60, 80, 3), np.float32)
    res = fidelity_ranking.rank(clip, tracker)
    assert len(calls) == 4   # the clip (= "identical"), slowed, still, reversed: once each for both forms
    assert res["default"]["ranked"] and res["default"]["scores"]["identical"] == pytest.approx(1.0)
    assert set(res) == {"default", "paper"}
