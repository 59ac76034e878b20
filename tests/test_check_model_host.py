"""``python -m bench.quality --check-model`` inside real ComfyUI: it finds motion in attention
built to match tokens and not in random attention, reads a real clip's motion with optical
flow, and refuses what it cannot check before any model pass."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.clips import texture_clip

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def check(comfy, fastvmt_pack):
    from bench import quality

    def run(*args):
        return quality.main(["--check-model", *map(str, args)], host=comfy)
    return run


def write_clip(path, frames: np.ndarray):
    import cv2
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 16, (frames.shape[2], frames.shape[1]))
    for f in frames:
        out.write(np.ascontiguousarray(f[..., ::-1]))
    out.release()
    return path


def summary(path) -> tuple[dict, dict]:
    res = json.loads(path.read_text())
    return res, {(r["block"], r["sigma"]): r for r in res["summary"]}


def test_check_finds_motion_only_in_the_block_whose_attention_matches_tokens(check, comfy, tmp_path):
    """Level 1's model: block 1 has W_k = W_q, so on a clean moving texture its attention
    follows the motion; block 0's random bilinear attention does not."""
    from bench import quality
    model = comfy.model_dir("diffusion_models") / quality.level1_model(comfy, "random, tied q/k")
    assert check(model, "--blocks", "0,1", "--seeds", "2", "--json", tmp_path / "r.json") == 0
    res, by = summary(tmp_path / "r.json")
    assert res["setup"]["guided_sigmas"] == pytest.approx([1.0, 0.9888], abs=1e-3)   # 12 steps at shift 8
    tied, untied = by[(1, 0.0)]["cosine"], by[(0, 0.0)]["cosine"]
    print(f"motion-part cosine on the clean latent: tied block {tied:.2f}, random block {untied:.2f}")
    assert tied > 0.3 and tied > untied + 0.2
    assert by[(1, 1.0)]["cosine"] is None and by[(1, 1.0)]["motion_part"] == 0.0    # pure noise: nothing to read
    assert res["verdict"]["pure_noise_guided_steps"] == 1 and res["verdict"]["can_test_guidance"] is False


def test_check_reads_a_real_clip_against_optical_flow(check, comfy, tiny_wan, tiny_vae, tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", texture_clip(17, 64, 96, 1))
    model, vae = comfy.model_dir("diffusion_models") / tiny_wan, comfy.model_dir("vae") / tiny_vae
    assert check(model, "--clip", clip, "--vae", vae, "--width", 96, "--height", 64, "--length", 17,
                 "--blocks", "3", "--json", tmp_path / "r.json") == 0
    res, by = summary(tmp_path / "r.json")
    assert res["setup"]["against"].startswith("classical optical flow")
    # a pan of 1 px a video frame: latent pairs 2-8 video frames apart, 16 px tokens
    assert 0.15 < by[(3, 0.0)]["truth"] < 0.5
    assert all(by[(3, s)]["cosine"] is not None for s in (0.0, 0.5, 0.8))


def test_check_refuses_files_that_are_not_wan_checkpoints(check, comfy, tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not a model")
    with pytest.raises(SystemExit, match="notes.safetensors: ComfyUI could not load it .*Wan 2.1 / 2.2"):
        check(text)
    ltxv = comfy.model_dir("diffusion_models") / comfy.tiny_ltxv()
    with pytest.raises(SystemExit, match="reads it as LTXV.*not a Wan model"):
        check(ltxv)
    with pytest.raises(SystemExit, match="missing.safetensors: no such file"):
        check(tmp_path / "missing.safetensors")


def test_check_refuses_a_clip_shorter_than_the_temporal_span_before_loading_anything(check, tmp_path):
    clip = write_clip(tmp_path / "short.mp4", texture_clip(9, 64, 96, 1))
    # the model path does not exist: the clip's error comes first
    with pytest.raises(SystemExit, match=r"short.mp4: 9 frames read, but --span 3 .* at least 13 video frames"):
        check(tmp_path / "none.safetensors", "--clip", clip, "--vae", tmp_path / "none_vae.safetensors")
    with pytest.raises(SystemExit, match="--vae .*needs the Wan VAE"):
        check(tmp_path / "none.safetensors", "--clip", write_clip(tmp_path / "ok.mp4", texture_clip(17, 64, 96, 1)))
