"""bench.shapes_v2: the ground truth returned with each clip is what the clip shows
(shape centres follow the returned paths; the background moves by the returned camera),
measured model-free on the rendered intensities."""
from __future__ import annotations

import torch

from bench import shapes, shapes_v2
from bench.shapes_v2 import ClipSpecV2


def test_shape_centroids_follow_the_returned_paths_on_a_plain_background():
    spec = ClipSpecV2(two_shapes_p=0.0, texture=(0.0, 0.0))
    clips = shapes_v2.sample(torch.Generator().manual_seed(3), 9, spec)
    assert set(clips.classes.tolist()) == {0, 1, 2}, "the seed should cover every class"
    assert clips.intensity.shape == (9, 12, 32, 32) and not clips.present[:, 1].any()
    assert clips.intensity.amax((2, 3)).min() == 1.0  # white shapes on black
    for b in range(9):
        err = (shapes.centroid_path(clips.intensity[b]) - clips.paths[b, 0]).norm(dim=1).max()
        assert err < 0.2, (b, shapes.CLASSES[clips.classes[b]], float(err))  # 1/4-pixel supersampling
        moved = (clips.paths[b, 0, -1] - clips.paths[b, 0, 0]).norm()
        assert moved >= 3.0, "paths should really move"


def test_second_shape_is_drawn_at_its_path_over_the_texture():
    clips = shapes_v2.sample(torch.Generator().manual_seed(4), 6, ClipSpecV2(two_shapes_p=1.0))
    assert clips.present.all()
    b, f = torch.meshgrid(torch.arange(6), torch.arange(12), indexing="ij")
    for k in range(2):
        x, y = clips.paths[:, k, :, 0].floor().long(), clips.paths[:, k, :, 1].floor().long()
        assert (clips.intensity[b, f, y, x] > 0.99).all(), f"shape {k} is not white at its centre"
    # away from both shapes (a triangle's corners reach 1.35 r) only the texture shows
    c = torch.arange(32, dtype=torch.float32) + 0.5
    d = ((c[None, None, None, None, :] - clips.paths[..., 0, None, None]) ** 2
         + (c[None, None, None, :, None] - clips.paths[..., 1, None, None]) ** 2).sqrt()   # [B, 2, F, H, W]
    away = (d > 1.4 * clips.radii[:, :, None, None, None] + 1).all(1)
    texture = clips.intensity[away]
    assert away.float().mean() > 0.5
    assert 0.05 - 1e-6 <= texture.min() and texture.max() <= 0.5 + 1e-6 and texture.std() > 0.03


def test_background_moves_by_the_returned_camera():
    """A Gaussian blob at a known scene point: its centroid in frame f sits at camera[f] @ (q0, 1)
    for sampled pans, zooms and rotations; frame 0 is the identity."""
    spec = ClipSpecV2(pan=4.0, camera_p=1.0)
    gen = torch.Generator().manual_seed(5)
    scale, angle, shift = shapes_v2.random_camera(gen, 8, spec)
    camera = shapes_v2.camera_matrices(scale, angle, shift, spec.size)
    assert torch.allclose(camera[:, 0], torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(8, 2, 3), atol=1e-6)
    assert (scale[:, -1] - 1).abs().max() > 0.05 and angle[:, -1].abs().max() > 0.03
    n = spec.size + 2 * shapes_v2.canvas_margin(spec)
    margin = (n - spec.size) / 2
    q0 = torch.tensor([spec.size / 2 + 3.0, spec.size / 2 - 2.0])
    c = torch.arange(n, dtype=torch.float32) + 0.5 - margin
    blob = torch.exp(-((c[None, :] - q0[0]) ** 2 + (c[:, None] - q0[1]) ** 2) / (2 * 1.2 ** 2))
    frames = shapes_v2.warp_background(blob.expand(8, n, n), camera, spec.size)
    expected = camera[..., :2] @ q0 + camera[..., 2]                          # [B, F, 2]
    for b in range(8):
        err = (shapes.centroid_path(frames[b]) - expected[b]).norm(dim=1).max()
        assert err < 0.1, (b, float(err))
    travel = (expected[:, -1] - expected[:, 0]).norm(dim=1)
    assert travel.max() > 2.0, "the sampled cameras should move the blob"


def test_a_seed_fixes_the_clips():
    a = shapes_v2.sample(torch.Generator().manual_seed(7), 2)
    b = shapes_v2.sample(torch.Generator().manual_seed(7), 2)
    assert torch.equal(a.intensity, b.intensity) and torch.equal(a.camera, b.camera)
    assert torch.allclose(shapes.decode(a.latent), a.intensity, atol=1e-6)  # the v1 codec round-trips
