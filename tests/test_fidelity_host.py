"""The Motion Fidelity node inside real ComfyUI, through its real executor.

Moving clips are built from stock nodes: one FastVMT Test Image frame, cropped at
shifting offsets (ImageCrop) and joined (ImageBatch), so the content pans by a known
step per frame."""

import math

import pytest
import torch

pytest.importorskip("cv2")

FRAMES, SIZE, STEP = 6, 64, (2, 1)  # 6 frames of 64x64, window moves 2 px right, 1 px down per frame


def pan_nodes(g, prefix, order):
    """Add crop + batch nodes for a pan over texture node "tex"; frames in ``order``; returns the last id."""
    for k in range(FRAMES):
        g[f"{prefix}crop{k}"] = {"class_type": "ImageCrop",
                                 "inputs": {"image": ["tex", 0], "width": SIZE, "height": SIZE,
                                            "x": STEP[0] * k, "y": STEP[1] * k}}
    last = f"{prefix}crop{order[0]}"
    for i, k in enumerate(order[1:]):
        g[f"{prefix}batch{i}"] = {"class_type": "ImageBatch",
                                  "inputs": {"image1": [last, 0], "image2": [f"{prefix}crop{k}", 0]}}
        last = f"{prefix}batch{i}"
    return last


def fidelity_graph(generated="same"):
    g = {"tex": {"class_type": "FastVMTTestImage",
                 "inputs": {"seed": 11, "frames": 1, "height": 96, "width": 112}}}
    ref = pan_nodes(g, "ref_", list(range(FRAMES)))
    if generated == "same":
        gen = ref
    elif generated == "reversed":
        gen = pan_nodes(g, "rev_", list(reversed(range(FRAMES))))
    else:  # independent random frames of another size: nothing trackable through all frames
        g["noise"] = {"class_type": "FastVMTTestImage",
                      "inputs": {"seed": 3, "frames": 4, "height": 48, "width": 40}}
        gen = "noise"
    g["fid"] = {"class_type": "FastVMTMotionFidelity",
                "inputs": {"reference": [ref, 0], "generated": [gen, 0]}}
    for i in range(3):
        g[f"out{i}"] = {"class_type": "FastVMTTestInspect", "inputs": {"value": ["fid", i]}}
    return g


def test_motion_fidelity_node_registered(fastvmt_pack):
    assert "FastVMTMotionFidelity" in fastvmt_pack


def test_identical_clips_score_near_one(run_graph, fastvmt_pack):
    r = run_graph(fidelity_graph("same")).raise_for_error()
    score, report, vis = r.output("fid")
    assert isinstance(score, float) and score > 0.99
    assert isinstance(report, str) and report.startswith("Motion fidelity: ")
    assert "tracks: reference" in report and "global (camera) motion EPE: 0.000 px/frame" in report
    assert torch.is_tensor(vis) and vis.shape == (FRAMES, SIZE, SIZE, 3) and vis.dtype == torch.float32
    assert torch.isfinite(vis).all() and vis.min() >= 0 and vis.max() <= 1
    assert r.ui_output("fid")["text"][0] == report
    assert r.ui_output("out0")["fastvmt_stats"][0]["value"] == score


def test_reversed_clip_scores_negative(run_graph, fastvmt_pack):
    r = run_graph(fidelity_graph("reversed")).raise_for_error()
    assert r.output("fid", 0) < -0.8


def test_untrackable_clip_of_another_size_is_a_clear_zero(run_graph, fastvmt_pack):
    r = run_graph(fidelity_graph("noise")).raise_for_error()
    score, report, vis = r.output("fid")
    assert score == 0.0 and math.isfinite(score)
    assert f"resized generated from 40x48 to the reference's {SIZE}x{SIZE}" in report
    assert "resampled generated from 4 to 6 frames" in report
    assert "no point could be tracked" in report
    assert vis.shape == (FRAMES, SIZE, SIZE, 3)
