"""The model-free check of known motion used by quality level 3 (bench/known_motion.py):
on synthetic "shapes v2" clips whose camera and shape paths are known, the estimators
read back that motion, and tell it apart from other motion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import known_motion, shapes_v2
from bench.shapes_v2 import ClipSpecV2

SPEC = ClipSpecV2()


def panning_clip(velocity, seed: int = 0):
    """A v2 clip (texture and one square) whose camera pans by ``velocity`` px per frame."""
    gen = torch.Generator().manual_seed(seed)
    f = SPEC.frames
    t = torch.arange(f, dtype=torch.float32)[None, :, None]
    shift = t * torch.tensor(velocity, dtype=torch.float32)
    camera = shapes_v2.camera_matrices(torch.ones(1, f), torch.zeros(1, f), shift, SPEC.size)
    background = shapes_v2.warp_background(shapes_v2.random_texture(gen, 1, SPEC), camera, SPEC.size)
    path = torch.stack([torch.linspace(8, 22, f), torch.full((f,), 12.0)], -1)[None, None]   # [1, 1, F, 2]
    paths = torch.cat([path, path], 1)                                                       # slot 2 absent
    clip = shapes_v2.compose(background, torch.tensor([1]), paths, torch.tensor([[4.0, 4.0]]),
                             torch.tensor([[True, False]]))
    return clip[0].numpy(), camera[0].numpy()


@pytest.mark.parametrize("velocity", [(0.8, -0.5), (-1.2, 0.0), (0.3, 1.0)])
def test_camera_estimate_recovers_a_known_pan_past_a_moving_shape(velocity):
    clip, camera = panning_clip(velocity)
    steps = known_motion.estimate_camera(clip)
    assert steps.shape == (SPEC.frames - 1, 2, 3)
    centre = known_motion.displacements(steps, np.array([[SPEC.size / 2, SPEC.size / 2]]))[:, 0]
    # block matching's sub-pixel step is biased by up to ~0.15 px towards whole pixels
    np.testing.assert_allclose(centre.mean(0), velocity, atol=0.15)
    assert np.abs(centre - np.array(velocity)).max() < 0.3
    np.testing.assert_allclose(steps[:, :, :2], np.broadcast_to(np.eye(2), steps[:, :, :2].shape), atol=0.02)
    good = known_motion.camera_score(clip, camera)
    assert good["camera_cos"] > 0.95 and good["camera_epe_px"] < 0.15, good
    _, opposite = panning_clip((-velocity[0], -velocity[1]))
    assert known_motion.camera_score(clip, opposite)["camera_cos"] < -0.5
    still = np.repeat(clip[:1], SPEC.frames, axis=0)
    assert known_motion.camera_score(still, camera)["camera_cos"] < 0.3


def test_camera_estimate_follows_random_v2_cameras_with_zoom_and_rotation():
    clips = shapes_v2.sample(torch.Generator().manual_seed(5), 8, ClipSpecV2(camera_p=1.0))
    scores = [known_motion.camera_score(clips.intensity[b].numpy(), clips.camera[b].numpy()) for b in range(8)]
    cos = [s["camera_cos"] for s in scores]
    assert np.mean(cos) > 0.85 and min(cos) > 0.6, cos
    # the same clips against another clip's camera: the motion does not match
    wrong = [known_motion.camera_score(clips.intensity[b].numpy(), clips.camera[(b + 1) % 8].numpy())["camera_cos"]
             for b in range(8)]
    assert np.mean(wrong) < np.mean(cos) - 0.4, (cos, wrong)


def test_step_transforms_compose_back_to_the_camera():
    clips = shapes_v2.sample(torch.Generator().manual_seed(2), 1, ClipSpecV2(camera_p=1.0))
    cam = clips.camera[0].numpy().astype(np.float64)
    steps = known_motion.step_transforms(cam)
    acc = np.eye(3)
    for f, s in enumerate(steps, start=1):   # frame 0 is the identity; chaining the steps gives frame f
        acc = np.vstack([s, [0, 0, 1]]) @ acc
        np.testing.assert_allclose(acc[:2], cam[f], atol=1e-4)


def test_shape_tracks_follow_two_shapes_moving_apart_and_not_a_reversed_clip():
    clips = shapes_v2.sample(torch.Generator().manual_seed(4), 4, ClipSpecV2(two_shapes_p=1.0))
    reversed_cos = []
    for b in range(4):
        clip, truth = clips.intensity[b].numpy(), (clips.paths[b].numpy(), clips.radii[b].numpy(),
                                                   clips.present[b].numpy())
        good = known_motion.shape_score(clip, *truth)
        assert good["shape_cos"] > 0.9 and good["shape_seen"] == 1.0, (b, good)
        reversed_cos.append(known_motion.shape_score(clip[::-1].copy(), *truth)["shape_cos"])
        assert known_motion.shape_score(np.repeat(clip[:1], SPEC.frames, 0), *truth)["shape_cos"] < 0.4, b
    # (clip 2's shapes touch at the end, so its reversed tracks start from one blob)
    assert max(reversed_cos) < 0.3 and np.mean(reversed_cos) < -0.3, reversed_cos


def test_a_clip_without_shapes_shows_no_shape_motion():
    clip = np.full((SPEC.frames, SPEC.size, SPEC.size), 0.3)
    tracks, seen = known_motion.foreground_tracks(clip, 2)
    assert seen == 0.0 and np.ptp(tracks, axis=1).max() == 0.0
