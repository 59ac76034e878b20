"""Motion controls on synthetic flows with known answers (no ComfyUI): the robust camera fit
and its decomposition, strength, transfer, regions and their masks."""

import pytest
import torch

from fastvmt_core import (FastVMTSettings, MotionFlow, affine_field, build_controls, confine, controlled_loss,
                          decompose, fit_camera, frame_pairs, keep_outside, motion_targets, sliding_window_amf,
                          total_loss, window_loss)
from fastvmt_core.motion_controls import controls_summary, region_weights, tile_weights

PATCH = (1, 2, 2)


def random_affine(pairs, seed=0, linear=0.05, shift=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(pairs, 2, 2, generator=g) * linear, torch.randn(pairs, 2, generator=g) * shift


def flow_of(disp, frames):
    """A MotionFlow over the first ``len(disp)`` frame pairs of ``frames`` frames (span 2)."""
    pairs = torch.tensor(frame_pairs(frames, 2)[: disp.shape[0]])
    return MotionFlow(pairs, disp, None, (frames, disp.shape[1], disp.shape[2]))


# ---- the camera fit ------------------------------------------------------------------------

def test_known_affine_field_is_recovered_exactly_with_zero_residual():
    matrix, translation = random_affine(6)
    field = affine_field(matrix, translation, 9, 14)
    fit, residual = decompose(field)
    torch.testing.assert_close(fit.matrix, matrix, atol=1e-6, rtol=0)
    torch.testing.assert_close(fit.translation, translation, atol=1e-6, rtol=0)
    assert float(residual.abs().max()) < 1e-5
    assert float(fit.weights.min()) == pytest.approx(1.0)  # nothing treated as an outlier


def test_moving_objects_do_not_pull_the_camera_fit():
    """A zoom + pan with two blobs (a fifth of the tokens) moving their own way: the camera is
    recovered, the residual is the blobs' own motion, zero elsewhere, and the blobs get weight 0."""
    matrix = torch.tensor([[[0.04, 0.01], [-0.01, 0.04]]]).repeat(4, 1, 1)
    translation = torch.tensor([[0.5, -1.0]]).repeat(4, 1)
    field = affine_field(matrix, translation, 12, 16)
    objects = torch.zeros_like(field)
    objects[:, 2:6, 2:7] = torch.tensor([2.0, 3.0])
    objects[:, 7:10, 10:14] = torch.tensor([-1.5, 0.5])
    fit, residual = decompose(field + objects)
    torch.testing.assert_close(fit.matrix, matrix, atol=1e-5, rtol=0)
    torch.testing.assert_close(fit.translation, translation, atol=1e-5, rtol=0)
    torch.testing.assert_close(residual, objects, atol=1e-4, rtol=0)
    moving = objects.norm(dim=-1) > 0
    assert float(fit.weights[moving].max()) == 0.0 and float(fit.weights[~moving].min()) > 0.99
    # ordinary least squares (no robust weights) is pulled by them
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    design = torch.stack([ys.flatten(), xs.flatten(), torch.ones(192)], dim=1)
    ols = torch.linalg.lstsq(design, (field + objects)[0].reshape(-1, 2)).solution
    assert float((ols[2] - translation[0]).abs().max()) > 0.1


def test_pan_read_by_the_sliding_window_flow_is_recovered():
    """A texture panning (1, 2) tokens per frame, through the method's own flow: tokens whose
    match left the frame get wrong displacements and weight 0, the pan comes out exactly."""
    from tests.helpers.synthetic import translating_features
    features = translating_features(4, 12, 16, 32, (1, 2))
    flow = sliding_window_amf(features, features, temporal_span=2, window=7)
    fit = fit_camera(flow.displacement)
    expected = flow.offsets[:, None].float() * torch.tensor([1.0, 2.0])
    torch.testing.assert_close(fit.translation, expected, atol=1e-4, rtol=0)
    assert float(fit.matrix.abs().max()) < 1e-4


def test_prior_region_chooses_where_the_camera_is_read():
    left = affine_field(*random_affine(3, seed=1), 8, 12)
    right = affine_field(*random_affine(3, seed=2), 8, 12)
    field = torch.cat([left[:, :, :6], right[:, :, 6:]], dim=2)
    prior = torch.zeros(3, 8, 12)
    prior[:, :, :6] = 1.0
    fit = fit_camera(field, prior)
    torch.testing.assert_close(fit.field, left, atol=1e-4, rtol=0)


def test_camera_fit_is_differentiable_and_ignores_outliers_in_its_gradient():
    field = affine_field(*random_affine(2), 8, 10).clone()
    field[:, 1:3, 1:3] += 4.0  # an object
    disp = field.clone().requires_grad_(True)
    fit_camera(disp).field.sum().backward()
    assert float(disp.grad[:, 1:3, 1:3].abs().max()) == 0.0  # the object has no say in the camera
    assert float(disp.grad[:, 5:, 5:].abs().min()) > 0.0


def test_degenerate_grids_and_empty_priors_stay_finite():
    field = torch.randn(2, 1, 7, 2)
    assert torch.isfinite(fit_camera(field).field).all()
    fit = fit_camera(torch.randn(2, 4, 4, 2), torch.zeros(2, 4, 4))
    assert torch.isfinite(fit.field).all()


# ---- strength and transfer -------------------------------------------------------------------

def controls(**kw):
    settings = FastVMTSettings().replace(**{k: kw.pop(k) for k in ("motion_strength", "transfer") if k in kw})
    latent = kw.pop("reference", None)
    latent = torch.zeros(1, 16, *kw.pop("latent", (3, 16, 24))) if latent is None else latent
    return build_controls(settings, kw.pop("reference_mask", None), kw.pop("generation_mask", None), latent, PATCH)


def panning_latent(frames=4, h=16, w=24, velocity=(2, 1), seed=0):
    """[1, 16, F, H, W]: a smooth random texture moving (dx, dy) latent pixels per frame."""
    g = torch.Generator().manual_seed(seed)
    tex = torch.nn.functional.interpolate(torch.randn(1, 16, h, w, generator=g), scale_factor=2, mode="bicubic")[0]
    vx, vy = velocity
    frames_ = [tex[:, h // 2 - t * vy: h // 2 - t * vy + h, w // 2 - t * vx: w // 2 - t * vx + w] for t in range(frames)]
    return torch.stack(frames_, dim=1)[None]


def camera_and_objects(frames=3, h=8, w=12, seed=0):
    n = len(frame_pairs(frames, 2))
    camera = affine_field(*random_affine(n, seed=seed), h, w)
    objects = torch.zeros_like(camera)
    objects[:, 2:5, 3:6] = torch.tensor([1.5, -2.0])
    return camera, objects


def test_defaults_run_the_plain_loss():
    assert controls() is None
    flow = flow_of(torch.randn(3, 8, 12, 2), 3)
    assert motion_targets(flow, None) is flow


@pytest.mark.parametrize("strength", [0.0, 0.5, 2.0])
def test_strength_scales_the_targets_of_each_part(strength):
    camera, objects = camera_and_objects()
    flow = flow_of(camera + objects, 3)
    for transfer, part in (("all", camera + objects), ("camera", camera), ("objects", objects)):
        t = motion_targets(flow, controls(motion_strength=strength, transfer=transfer))
        torch.testing.assert_close(t.target, strength * part, atol=1e-4, rtol=0)


def test_camera_transfer_leaves_objects_free_and_objects_transfer_leaves_the_camera_free():
    camera, objects = camera_and_objects()
    ref = flow_of(camera + objects, 3)
    other_camera, other_objects = camera_and_objects(seed=5)
    other_objects = other_objects.roll(4, dims=2) * -1
    cam = motion_targets(ref, controls(transfer="camera"))
    obj = motion_targets(ref, controls(transfer="objects"))
    same_camera = flow_of(camera + other_objects, 3)
    same_objects = flow_of(other_camera + objects, 3)
    zero = dict(lambda_window=0.0)
    assert float(controlled_loss(cam, same_camera, **zero)[0]) < 1e-8
    assert float(controlled_loss(obj, same_objects, **zero)[0]) < 1e-8
    assert float(controlled_loss(cam, same_objects, **zero)[0]) > 1e-2
    assert float(controlled_loss(obj, same_camera, **zero)[0]) > 1e-2


def test_camera_loss_alone_brings_a_still_clip_to_the_reference_pan():
    """The method without a model: a clip of learnable features (q = k) that starts still,
    optimised with the camera loss only, ends with the reference's pan as its global motion."""
    from tests.helpers.synthetic import translating_features
    torch.manual_seed(0)
    frames, h, w, d, flow_kw = 4, 8, 12, 16, dict(temporal_span=1, window=5, tile=(2, 2))
    ref_features = translating_features(frames, h, w, d, (1, 1), scale=1.5)  # sharp enough to read, not saturated
    ref = sliding_window_amf(ref_features, ref_features, **flow_kw)
    settings = FastVMTSettings(transfer="camera", tile=(2, 2))
    targets = motion_targets(ref, build_controls(settings, None, None, torch.zeros(1, 16, frames, 2 * h, 2 * w),
                                                 PATCH))
    x = (ref_features[:1].expand(frames, -1, -1, -1) + 0.1 * torch.randn(frames, h, w, d)).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.05)
    start = fit_camera(sliding_window_amf(x.detach(), x.detach(), **flow_kw).displacement)
    for _ in range(40):
        loss, _ = controlled_loss(targets, sliding_window_amf(x, x, **flow_kw), lambda_window=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        camera = fit_camera(sliding_window_amf(x, x, **flow_kw).displacement)
    pan = fit_camera(ref.displacement)
    torch.testing.assert_close(pan.field, torch.ones_like(pan.field), atol=0.1, rtol=0)  # (1, 1) per frame
    before, after = ((f.field - pan.field).norm(dim=-1).mean() for f in (start, camera))
    assert float(before) > 1.3 and float(after) < 0.3 * float(before)


def test_strength_one_all_under_controls_matches_the_plain_loss():
    """An everywhere-true generation mask goes through the controlled path with neutral
    settings: it must give today's loss (the window loss over all tiles included)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 8, 12, 16, generator=g).unbind(0)
    ref = sliding_window_amf(q, k, temporal_span=2, window=5, tile=(3, 4))
    gen = sliding_window_amf(q.roll(1, 2), k, temporal_span=2, window=5, tile=(3, 4))
    full = controls(generation_mask=torch.ones(1, 64, 96), latent=(3, 16, 24))
    plain, _ = total_loss(ref, gen)
    ours, _ = controlled_loss(motion_targets(ref, full), gen)
    torch.testing.assert_close(ours, plain, atol=1e-6, rtol=1e-6)


def test_reference_motion_is_read_from_its_latent_and_warns_when_the_chosen_part_is_absent():
    """A still reference with transfer 'camera', or a pure pan with 'objects', gets a warning
    naming what happened; a pan with 'camera' does not. The camera's size is the pan's."""
    still, pan = torch.zeros(1, 16, 4, 16, 24), panning_latent()
    cases = ((still, "camera", "the reference shows almost no camera motion"),
             (pan, "objects", "the reference shows almost no object motion"),
             (pan, "camera", None))
    for latent, transfer, warning in cases:
        c = controls(transfer=transfer, reference=latent)
        lines, info = controls_summary(c, [])
        assert lines[0] == f"motion controls: motion_strength 1, transfer '{transfer}'"
        warned = [line for line in lines if line.startswith("warning: ")]
        if warning is None:
            assert not warned and info["reference_camera"] == pytest.approx(5 ** 0.5, abs=0.15)
        else:
            assert len(warned) == 1 and warning in warned[0] and info["warnings"]


# ---- regions ----------------------------------------------------------------------------------

def test_mask_is_averaged_over_each_token():
    mask = torch.zeros(1, 64, 96)   # video pixels: the latent is 8x12, tokens 4x6 (16 px each)
    mask[:, 16:32, 48:56] = 1.0      # the left half of token (1, 3)
    w, notes = region_weights(mask, (3, 8, 12), PATCH, "generation_mask")
    assert w.shape == (3, 4, 6) and notes == []
    expected = torch.zeros(4, 6)
    expected[1, 3] = 0.5
    torch.testing.assert_close(w, expected.expand(3, 4, 6))


def test_mask_frames_per_video_frame_and_per_latent_frame():
    per_video = torch.zeros(9, 8, 12)        # 9 video frames -> 3 latent frames (1 + 4 + 4)
    per_video[0] = 1.0
    per_video[5:7] = 1.0                     # two of the four frames of latent frame 2
    w, _ = region_weights(per_video, (3, 8, 12), PATCH, "m")
    assert w[:, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.5])
    per_latent = torch.stack([torch.zeros(8, 12), torch.ones(8, 12), torch.zeros(8, 12)])
    w, _ = region_weights(per_latent, (3, 8, 12), PATCH, "m")
    assert w[:, 0, 0].tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match=r"m: the mask has 4 frames; give 1 .*, 3 .* or 9"):
        region_weights(torch.ones(4, 8, 12), (3, 8, 12), PATCH, "m")


def test_mask_of_another_aspect_is_centre_cropped_and_says_so():
    mask = torch.zeros(1, 90, 160)           # 16:9, the video is 3:2 (8x12 latent)
    mask[:, :, :12] = 1.0                   # the left 12 columns: cropped away (12 each side)
    mask[:, :, 80:] = 1.0                   # the right half: kept
    w, notes = region_weights(mask, (3, 8, 12), PATCH, "reference_mask")
    assert len(notes) == 1 and "reference_mask: the mask is 160x90 (1.78:1) but the video is 1.50:1" in notes[0]
    assert "centre-cropped to 135x90" in notes[0]
    assert float(w[0, :, 0].max()) == 0.0 and float(w[0, :, -1].min()) == 1.0
    only_edge = torch.zeros(1, 90, 160)
    only_edge[:, :, :10] = 1.0
    with pytest.raises(ValueError, match="nothing of the mask is left"):
        region_weights(only_edge, (3, 8, 12), PATCH, "reference_mask")


@pytest.mark.parametrize("mask,message", [
    (torch.zeros(1, 8, 12), "generation_mask: the mask selects nothing"),
    (torch.full((1, 8, 12), 2.0), "generation_mask: mask values must lie in 0..1"),
    (torch.full((1, 8, 12), float("nan")), "generation_mask: contains NaN"),
    (torch.ones(2, 1, 8, 12), r"generation_mask: expected a MASK \[frames, height, width\]"),
])
def test_bad_masks_are_refused_naming_the_input(mask, message):
    with pytest.raises(ValueError, match=message):
        controls(generation_mask=mask)


def test_regions_that_do_not_overlap_are_refused_unless_only_the_camera_is_compared():
    left, right = torch.zeros(1, 16, 24), torch.zeros(1, 16, 24)
    left[..., :12], right[..., 12:] = 1.0, 1.0
    with pytest.raises(ValueError, match="the two regions do not overlap"):
        controls(reference_mask=left, generation_mask=right)
    assert controls(reference_mask=left, generation_mask=right, transfer="camera") is not None


def test_generation_region_weights_the_loss_and_confines_the_latent():
    c = controls(generation_mask=torch.cat([torch.ones(1, 16, 12), torch.zeros(1, 16, 12)], dim=2))
    assert c.latent_region.shape == (1, 1, 3, 16, 24)
    assert float(c.latent_region[..., :12].min()) == 1.0 and float(c.latent_region[..., 12:].max()) == 0.0
    x = torch.randn(1, 4, 3, 16, 24, requires_grad=True)
    (confine(x, c.latent_region) ** 2).sum().backward()
    assert float(x.grad[..., 12:].abs().max()) == 0.0 and float(x.grad[..., :12].abs().min()) > 0
    moved = x.detach() + 1.0
    kept = keep_outside(moved, x.detach(), c.latent_region)
    assert torch.equal(kept[..., 12:], x.detach()[..., 12:]) and torch.equal(kept[..., :12], moved[..., :12])
    # Errors outside the region do not count.
    camera, objects = camera_and_objects(h=8, w=12)
    ref = flow_of(camera, 3)
    gen = camera.clone()
    gen[:, :, 6:] += 5.0
    assert float(controlled_loss(motion_targets(ref, c), flow_of(gen, 3), lambda_window=0.0)[0]) < 1e-10


def test_tile_weights_follow_the_sliding_window_tile_layout():
    region = torch.zeros(2, 8, 12)
    region[:, 3:6, 4:8] = 1.0                 # exactly tile (1, 1) of 3x4 tiles (3 rows of 3 tiles)
    w = tile_weights(region, (3, 4))
    assert w.shape == (2, 9) and w[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0]
    edge = tile_weights(torch.ones(1, 8, 12), (3, 4))
    assert edge.min() == 1.0                   # clipped edge tiles count their tokens inside the grid
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 4, 8, 12, 8, generator=g).unbind(0)
    gen = sliding_window_amf(q, k, temporal_span=3, window=5, tile=(3, 4))
    one = torch.zeros(4, 9)
    one[:, 4] = 1.0
    wk = gen.window_keys
    table = {tuple(p): i for i, p in enumerate(gen.pairs.tolist())}
    rows = [(table[(i, j)], table[(i, j + 1)]) for (i, j) in table if (i, j + 1) in table]
    expected = torch.stack([(wk[b, 4] - wk[a, 4]).norm() for a, b in rows]).mean()
    torch.testing.assert_close(window_loss(gen, one), expected)


def test_settings_validate_the_controls():
    with pytest.raises(ValueError, match=r"motion_strength must be in \[0.0, 10.0\]; got -0.5"):
        FastVMTSettings(motion_strength=-0.5)
    with pytest.raises(ValueError, match="transfer must be one of all, camera, objects"):
        FastVMTSettings(transfer="background")


def test_a_context_window_gets_its_own_frames_of_the_regions():
    """Under context windows each window's targets come from its frames of the token regions;
    the latent region (a mask on the whole latent) stays whole."""
    from fastvmt_core.motion_controls import controls_for_frames
    ref_mask = torch.rand(5, 16, 24)          # one mask per latent frame: frames differ
    gen_mask = (torch.rand(5, 16, 24) > 0.3).float()
    c = controls(reference_mask=ref_mask, generation_mask=gen_mask, latent=(5, 16, 24))
    cut = controls_for_frames(c, [2, 3, 4])
    assert torch.equal(cut.reference_region, c.reference_region[2:5])
    assert torch.equal(cut.generation_region, c.generation_region[2:5])
    assert cut.latent_region is c.latent_region and cut.strength == c.strength
    assert controls_for_frames(None, [0, 1]) is None and controls_for_frames(c, None) is c
