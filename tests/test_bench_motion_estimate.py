"""The quality benchmark's model-free motion estimate (bench/motion_estimate.py) on clips
with known motion."""

import numpy as np
import pytest

from bench.motion_estimate import block_motion, displacement_agreement
from tests.helpers.synthetic import H, W, translating


def _channels_first(clip):
    """[T, H, W, 3] frames -> [T, 3, H, W] (block_motion takes any channel count)."""
    return np.ascontiguousarray(clip.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("velocity", [(2.0, 1.0), (-1.5, 0.5), (0.0, -2.0)])
def test_block_motion_recovers_translation(velocity):
    field = block_motion(_channels_first(translating(frames=4, velocity=velocity, seed=1)), (2, 2))
    assert field.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(field.reshape(-1, 2).mean(0), velocity, atol=0.15)
    assert np.abs(field - np.array(velocity)).max() < 0.4


def test_block_motion_sees_regions_moving_apart_and_ignores_independent_noise():
    left = translating(frames=4, velocity=(-2.0, 0.0), seed=2)
    right = translating(frames=4, velocity=(2.0, 0.0), seed=3)
    clip = np.concatenate([left[:, :, :W // 2], right[:, :, W // 2:]], axis=2)
    noisy = clip + np.random.default_rng(0).normal(0, 0.3, clip.shape)  # fresh noise every frame
    field = block_motion(_channels_first(noisy), (1, 2))
    assert (field[:, 0, 0, 0] < -1.5).all() and (field[:, 0, 1, 0] > 1.5).all(), field[..., 0]


def test_block_motion_of_a_still_clip_is_zero_and_bad_input_is_clear():
    still = np.repeat(_channels_first(translating(frames=1, seed=4)), 3, axis=0)
    np.testing.assert_allclose(block_motion(still, (2, 2)), 0.0, atol=0.05)
    with pytest.raises(ValueError, match="clip"):
        block_motion(still[:1], (1, 1))
    with pytest.raises(ValueError, match="cells"):
        block_motion(still, (H, W))


def test_displacement_agreement_scale():
    a = np.tile([2.0, 1.0], (4, 3, 1))
    assert displacement_agreement(a, a) == pytest.approx(1.0)
    assert displacement_agreement(a, -a) < -0.95
    assert abs(displacement_agreement(a, a[..., ::-1] * [1, -1])) < 0.05   # perpendicular
    assert displacement_agreement(a, np.zeros_like(a), still_px=0.2) < 0.1  # still vs moving
    with pytest.raises(ValueError, match="shape"):
        displacement_agreement(a, a[:2])
