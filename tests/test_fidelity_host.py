"""The Motion Fidelity node inside real ComfyUI, through its real executor.

Moving clips are built from stock nodes: one FastVMT Test Image frame, cropped at
shifting offsets (ImageCrop) and joined (ImageBatch), so the content pans by a known
step per frame."""

import math

import pytest
import torch

pytest.importorskip("cv2")

from tests.helpers.graphs import builder  # noqa: E402
from tests.helpers.synthetic import random_weights  # noqa: E402

FRAMES, SIZE, STEP = 6, 64, (2, 1)  # 6 frames of 64x64, window moves 2 px right, 1 px down per frame


def pan_nodes(g, prefix, order):
    """Add crop + batch nodes for a pan over texture node "tex"; frames in ``order``; returns the last node."""
    crops = [g.node("ImageCrop", f"{prefix}crop{k}", image=g.lookup_node("tex").out(0), width=SIZE, height=SIZE,
                    x=STEP[0] * k, y=STEP[1] * k) for k in range(FRAMES)]
    last = crops[order[0]]
    for i, k in enumerate(order[1:]):
        last = g.node("ImageBatch", f"{prefix}batch{i}", image1=last.out(0), image2=crops[k].out(0))
    return last


def fidelity_builder(generated="same"):
    g = builder()
    g.node("FastVMTTestImage", "tex", seed=11, frames=1, height=96, width=112)
    ref = pan_nodes(g, "ref_", list(range(FRAMES)))
    if generated == "same":
        gen = ref
    elif generated == "reversed":
        gen = pan_nodes(g, "rev_", list(reversed(range(FRAMES))))
    else:  # independent random frames of another size: nothing trackable through all frames
        gen = g.node("FastVMTTestImage", "noise", seed=3, frames=4, height=48, width=40)
    fid = g.node("FastVMTMotionFidelity", "fid", reference=ref.out(0), generated=gen.out(0))
    for i in range(3):
        g.node("FastVMTTestInspect", f"out{i}", value=fid.out(i))
    return g


def fidelity_graph(generated="same"):
    return fidelity_builder(generated).finalize()


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


def test_match_radius_reaches_the_metric(run_graph, fastvmt_pack):
    g = fidelity_builder("reversed")
    fid = g.lookup_node("fid")
    local = run_graph(g.finalize()).raise_for_error().output("fid", 0)
    fid.set_input("match_radius", 1.0)   # the paper's unrestricted best match
    anywhere = run_graph(g.finalize()).raise_for_error()
    assert anywhere.output("fid", 0) != local
    fid.set_input("match_radius", 0.0)
    with pytest.raises(AssertionError, match="match_radius"):
        run_graph(g.finalize())  # below the input's minimum: refused by ComfyUI's validation


def test_ranking_command_on_clips_with_known_motion(tmp_path, capsys):
    """`python -m bench.fidelity_ranking` (docs/motion_fidelity.md): on an H.264 file made
    here (a pan following a still subject), and with --synthetic."""
    import json
    import av
    import numpy as np
    from bench import fidelity_ranking
    frames = (fidelity_ranking.followed_subject() * 255).round().astype(np.uint8)
    path = tmp_path / "pan.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    assert fidelity_ranking.main([str(path), "--frames", "17", "--json", str(tmp_path / "r.json")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "| default |" in line]
    assert len(rows) == 1 and "| yes |" in rows[0], rows
    res = json.loads((tmp_path / "r.json").read_text())["clips"]["pan.mp4"]["results"]["default"]
    assert res["ranked"] and res["still_minus_reversed"] > 0.3, res
    assert fidelity_ranking.main(["--synthetic"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "| default |" in line]
    assert len(rows) == 2 and all("| yes |" in row for row in rows), rows


@pytest.fixture(scope="module")
def cotracker_file(comfy, tmp_path_factory):
    """A random-weight CoTracker3 checkpoint of the real network (the released file's names
    and shapes: tests/test_core_cotracker.py checks them against CoTracker's own code) in
    ComfyUI's models/cotracker folder. The visibility bias calls every point visible."""
    path = tmp_path_factory.mktemp("cotracker") / "random_cotracker3.pth"
    torch.save(random_weights(5, visibility_bias=30.0), path)
    name = comfy.add_model_file("cotracker", path)
    bad = tmp_path_factory.mktemp("cotracker_bad") / "not_a_tracker.safetensors"
    from safetensors.torch import save_file
    save_file({"weight": torch.zeros(2, 2)}, str(bad))
    comfy.add_model_file("cotracker", bad)
    return name


def test_cotracker_checkpoint_in_models_folder_is_a_tracker_choice(comfy, run_graph, fastvmt_pack, cotracker_file):
    options = comfy.object_info()["FastVMTMotionFidelity"]["input"]["optional"]["tracker"]
    choices = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert choices[0] == "KLT (built-in)" and cotracker_file in choices and "not_a_tracker.safetensors" in choices
    g = fidelity_builder("same")
    fid = g.lookup_node("fid")
    fid.set_input("tracker", cotracker_file)
    fid.set_input("max_tracks", 16)
    r = run_graph(g.finalize()).raise_for_error()
    score, report, vis = r.output("fid")
    assert f"tracker: CoTracker3 ({cotracker_file})" in report and "tracks: reference 16, generated 16" in report
    # progress, one bar per clip: 6 frames make one group through the CNN, then 6 refinement passes
    steps = [(d["value"], d["max"]) for d in r.events_of("progress") if d.get("node") == "fid"]
    assert steps == [(k, 7) for k in range(8)] * 2, steps
    assert score == pytest.approx(1.0)          # identical clips, one deterministic tracker
    assert vis.shape == (FRAMES, SIZE, SIZE, 3)
    fid.set_input("tracker", "KLT (built-in)")
    assert "tracker: KLT" in run_graph(g.finalize()).raise_for_error().output("fid", 1)


def test_a_file_that_is_not_cotracker3_is_a_named_error(run_graph, fastvmt_pack, cotracker_file):
    g = fidelity_builder("same")
    fid = g.lookup_node("fid")
    fid.set_input("tracker", "not_a_tracker.safetensors")
    r = run_graph(g.finalize())
    assert not r.success
    text = r.error_text()
    assert "tracker: cannot use 'not_a_tracker.safetensors' as CoTracker3" in text
    assert "scaled_offline.pth" in text and "KLT (built-in)" in text
    fid.set_input("tracker", "missing.pth")
    with pytest.raises(AssertionError, match="tracker"):
        run_graph(g.finalize()).raise_for_error()   # not in the list: refused by ComfyUI's validation


def test_cotracker_stops_when_interrupted(comfy, run_graph, fastvmt_pack, cotracker_file, monkeypatch):
    seen = comfy.interrupt_at_progress(monkeypatch, "fid", 0)
    g = fidelity_builder("reversed")
    g.lookup_node("fid").inputs.update(tracker=cotracker_file, max_tracks=4)
    stopped = run_graph(g.finalize())
    assert not stopped.success and stopped.events_of("execution_interrupted")
    assert seen == [0], seen          # stopped after the first group of frames, in the first clip
