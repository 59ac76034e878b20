"""The image-to-video quality case (bench/i2v.py) at its smoke settings, inside the test
session's ComfyUI: the committed tiny shapes model, a start image held as latent frame 0 by
FastVMTTestFrameMask -> SetLatentNoiseMask, Guidance Sampler at denoise 1. What a user relies
on: the given first frame comes out unchanged under FastVMT guidance (also when it does not
sit where the reference starts), the other frames are generated, and the sampler's summary
says guidance ran and held the masked frame.
The full table comes from ``python -m bench.i2v`` (docs/quality.md)."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.host

TOL = 1e-3   # intensity 0..1; the held frame only passes through float32 latent scaling


@pytest.fixture(scope="module")
def smoke(comfy, fastvmt_pack, tmp_path_factory):
    from bench import i2v
    out = tmp_path_factory.mktemp("i2v_bench")
    res = i2v.cli(["--smoke", "--json", str(out / "i2v.json"), "--strip", str(out / "strip.png")], host=comfy)
    return {"res": res, "dir": out, "i2v": i2v}


def test_i2v_command_runs(smoke):
    """`python -m bench.i2v --smoke`: the three smoke rows, JSON without the clips, the strip."""
    res, out = smoke["res"], smoke["dir"]
    names = {"no transfer", "FastVMT", "FastVMT, offset start"}
    assert {r["config"] for r in res["i2v"]["runs"]} == names
    saved = json.loads((out / "i2v.json").read_text())
    assert {r["config"] for r in saved["i2v"]["summary"]} == names and "clips" not in saved["i2v"]
    assert saved["i2v"]["setup"]["denoise"] == 1.0
    import cv2
    img = cv2.imread(str(out / "strip.png"))
    assert img is not None and img.shape[0] > 5 * 64, "reference, two start images and three clips"


def test_held_start_frame_comes_out_unchanged_under_guidance(smoke):
    from bench import quality, shapes
    res = smoke["res"]
    spec = shapes.ClipSpec()
    ref = quality.shapes_reference(0, spec)
    for row in res["i2v"]["runs"]:
        name = row["config"]
        kept = res["i2v"]["clips"][(0, name)]
        clip, image = kept["clip"], kept["image"]
        # The given image: shape B, drawn where the row says (the reference's start, or moved off it).
        expected_pos = ref["path"][0] + torch.tensor(row["offset_px"])
        assert row["prompt"] == shapes.CLASSES[ref["b"]]
        assert float(image.max()) > 0.99 and float((shapes.centroid_path(image[None])[0] - expected_pos).norm()) < 0.5
        assert ("offset" in name) == (float(torch.tensor(row["offset_px"]).norm()) > 2.0)
        # Frame 0 comes back as given; the bench's own check agrees.
        diff = float((clip[0] - image).abs().max())
        assert diff < TOL, f"{name}: decoded frame 0 differs from the given image by {diff:.3g}"
        assert row["frame0_max_diff"] < TOL
        # The other frames were generated (the start latent's zeros decode to flat 0.5 grey).
        assert float((clip[1:] - 0.5).abs().amax(dim=(1, 2)).min()) > 0.3, f"{name}: a frame was not generated"
    clips = res["i2v"]["clips"]
    moved = (clips[(0, "FastVMT")]["clip"][1:] - clips[(0, "no transfer")]["clip"][1:]).abs().max()
    assert moved > 0.05, "guidance left the generated frames unchanged"


def test_guided_run_summary_says_guidance_ran_and_held_the_frame(smoke):
    rows = {r["config"]: r for r in smoke["res"]["i2v"]["runs"]}
    for name in ("FastVMT", "FastVMT, offset start"):
        g = rows[name]["guidance"]
        assert g["guided_steps"] == g["n_guided"] == 1, g     # 20% of 6 steps
        assert g["gradient_passes"] > 0
        assert g["summary"].startswith("FastVMT effi_AMF: guided 1/1 of 6 steps"), g["summary"]
        assert "held by the noise mask and left unchanged by guidance" in g["image_to_video"], g
    plain = rows["no transfer"]["guidance"]
    assert plain["guided_steps"] == 0 and "no guided steps" in plain["summary"]
