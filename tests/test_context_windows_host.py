"""Guidance with ComfyUI's context windows (WAN Context Windows (Manual) on the model), in
the real executor: guidance runs per window of the sampler's windows, a zero learning rate
gives plain windowed sampling, windows that cannot carry the flow are refused before
sampling with the node's inputs named, and an interrupt stops between two windows."""

import pytest
import torch

from comfy_host.host import pack_module
from tests.helpers.graphs import base_builder, inspect, ksampler_like, report, samples

FRAMES = 8     # latent frames (29 video frames)
SPAN = 2       # temporal_span: windows of >= 3 latent frames overlapping by >= 2
# 17 video frames -> 5 latent frames per window, overlap 9 -> 3: windows 0-4, 2-6, 3-7
WINDOWS = {"context_length": 17, "context_overlap": 9, "context_schedule": "standard_static",
           "context_stride": 1, "closed_loop": False, "fuse_method": "pyramid"}
GUIDED = {"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05, "guided_fraction": 0.4}


def windowed_builder(model, settings=GUIDED, **windows):
    """base_builder's graph on 8 latent frames with WAN Context Windows (Manual) between the
    loader and the Guidance Sampler (Extract Motion reads the whole reference)."""
    g = base_builder(model, frames=FRAMES, settings=settings, steps=5)
    g.lookup_node("motion").set_input("temporal_span", SPAN)
    cw = g.node("WanContextWindowsManual", "windows", model=g.lookup_node("model").out(0), **{**WINDOWS, **windows})
    g.lookup_node("sample").set_input("model", cw.out(0))
    return g


def with_plain_windowed(g):
    """``g`` plus a stock KSampler "plain" on the same context-windows model."""
    inspect(g, ksampler_like(g, "plain", g.lookup_node("sample")))
    return g


def test_guidance_runs_per_context_window(run_graph, tiny_wan, fastvmt_pack):
    g = with_plain_windowed(windowed_builder(tiny_wan))
    sample = g.lookup_node("sample")   # and the same guided run without context windows:
    inspect(g, g.node("FastVMTGuidanceSampler", "whole", **{**sample.inputs, "model": g.lookup_node("model").out(0)}))
    r = run_graph(g.finalize()).raise_for_error()
    rep = report(r)
    assert rep["n_guided"] == 2
    for step in rep["steps"]:
        assert step["windows"] == 3 and step["window_lengths"] == [5]
        assert step["losses"][-1] != step["losses"][0]
    assert "guidance ran per window, 3 windows of 5 latent frames" in r.ui_output("sample")["text"][0]
    # Every gradient pass is one window's: 3 per gradient evaluation, plus 3 reference passes per step.
    evaluations = sum(s["gradient_evaluations"] for s in rep["steps"])
    assert rep["dit_passes"] == 3 * evaluations + 3 * len(rep["steps"])
    assert samples(r).shape[2] == FRAMES
    assert not torch.equal(samples(r), samples(r, "plain"))
    # Memory is planned for one window's gradient pass (5 of 8 latent frames), not the whole latent's.
    assert rep["memory"]["estimate"] < report(r, "whole")["memory"]["estimate"]
    assert report(r, "whole")["steps"][0]["windows"] == 0


def test_zero_lr_equals_plain_windowed_sampling(run_graph, tiny_wan, fastvmt_pack):
    zero = {**GUIDED, "lr_start": 0.0, "lr_end": 0.0}
    r = run_graph(with_plain_windowed(windowed_builder(tiny_wan, settings=zero)).finalize()).raise_for_error()
    assert report(r)["steps"][0]["windows"] == 3
    assert torch.equal(samples(r), samples(r, "plain"))


def test_each_window_is_guided_by_the_same_frames_of_the_reference(run_graph, tiny_wan, fastvmt_pack):
    """Two references that agree on latent frames 0-4 and differ on 5-7 (LatentConcat along
    time): window 0-4 gets the same loss from both, windows 2-6 and 3-7 do not."""
    g = windowed_builder(tiny_wan, settings={**GUIDED, "lr_start": 0.0, "lr_end": 0.0})
    ref = g.lookup_node("ref")
    ref.set_input("frames", 5)
    sample, motion = g.lookup_node("sample"), g.lookup_node("motion")
    for suffix, seed in (("", 5), ("_b", 6)):
        tail = g.node("FastVMTTestLatent", f"tail{suffix}", seed=seed, channels=16, frames=3, height=8, width=12)
        joined = g.node("LatentConcat", f"ref_long{suffix}", samples1=ref.out(0), samples2=tail.out(0), dim="t")
        m = motion if not suffix else g.node("FastVMTExtractMotion", "motion_b", **motion.inputs)
        m.set_input("latent", joined.out(0))
        if suffix:
            inspect(g, g.node("FastVMTGuidanceSampler", "sample_b", **{**sample.inputs, "motion": m.out(0)}))
    r = run_graph(g.finalize()).raise_for_error()
    # The second guided step: the first reads the reference at sigma 1, pure noise.
    a, b = (report(r, node)["steps"][1] for node in ("sample", "sample_b"))
    assert a["reference_sigma"] < 0.999
    assert a["window_frames"] == b["window_frames"] == [[0, 4], [2, 6], [3, 7]]
    first_a, first_b = a["window_losses"][0], b["window_losses"][0]
    assert first_a[0] == first_b[0]
    assert first_a[1] != first_b[1] and first_a[2] != first_b[2]


def test_a_reference_shorter_than_the_generation_is_refused_before_sampling(run_graph, tiny_wan, fastvmt_pack):
    short = windowed_builder(tiny_wan)
    short.lookup_node("motion").set_input("length", (FRAMES - 3) * 4 + 1)
    short.lookup_node("ref").set_input("frames", FRAMES - 2)
    bad = run_graph(short.finalize())
    assert not bad.success
    message = bad.error["exception_message"]
    assert "6 frames" in message and f"{FRAMES} frames" in message and "Extract the motion at the generation's" in message
    assert "neither looped nor stretched" in message and "at least 29 frames" in message


@pytest.mark.parametrize("windows, expected", [
    ({"context_length": 9, "context_overlap": 1}, "overlap by 1 latent frames, fewer than the temporal span (2)"),
    ({"context_length": 5, "context_overlap": 1}, "shorter than one temporal span plus one"),
    ({"context_schedule": "looped_uniform", "closed_loop": True}, "not consecutive latent frames"),
    ({"context_schedule": "batched"}, "overlap by 0 latent frames"),
], ids=["small_overlap", "short_window", "looped", "batched"])
def test_windows_that_cannot_carry_the_flow_are_refused_before_sampling(run_graph, comfy, tiny_wan, fastvmt_pack,
                                                                         monkeypatch, windows, expected):
    calls = []
    real = pack_module("nodes.wan.guided_step").guide_latent
    monkeypatch.setattr(pack_module("nodes.wan.apply"), "guide_latent", lambda *a: calls.append(1) or real(*a))
    r = run_graph(windowed_builder(tiny_wan, **windows).finalize())
    assert not r.success
    message = r.error["exception_message"]
    assert "WAN Context Windows (Manual)" in message and expected in message, message
    assert "context_overlap to at least 5 video frames" in message and "context_length to at least 9" in message
    assert not calls   # refused before the first guided step


def test_an_interrupt_stops_between_two_windows(run_graph, comfy, tiny_wan, fastvmt_pack, monkeypatch):
    import comfy.model_management as mm
    module = pack_module("nodes.wan.guided_step")
    real, windows_run = module.flow_guidance_loss, []

    def loss_then_stop(*args, **kwargs):   # the stop button pressed during the first window's pass
        windows_run.append(1)
        mm.interrupt_current_processing(True)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, "flow_guidance_loss", loss_then_stop)
    r = run_graph(windowed_builder(tiny_wan).finalize())
    assert not r.success and r.events_of("execution_interrupted")
    assert len(windows_run) == 1   # the second window's pass never started
    monkeypatch.undo()
    again = run_graph(windowed_builder(tiny_wan).finalize()).raise_for_error()
    assert report(again)["steps"][0]["windows"] == 3
    assert "fastvmt" not in repr(again.output("model", 0).wrappers)


def test_apply_motion_then_a_stock_ksampler_guides_per_window(run_graph, tiny_wan, fastvmt_pack, caplog):
    """Context windows after Apply FastVMT Motion (the other order of the two model patches)."""
    g = windowed_builder(tiny_wan)
    sample = g.lookup_node("sample")
    apply = g.node("FastVMTApplyMotion", "apply", model=g.lookup_node("model").out(0),
                   motion=g.lookup_node("motion").out(0), settings=g.lookup_node("settings").out(0))
    g.lookup_node("windows").set_input("model", apply.out(0))
    inspect(g, ksampler_like(g, "stock", sample, model=g.lookup_node("windows").out(0)))
    g.remove_node("sample")
    g.remove_node("out")
    with caplog.at_level("INFO", logger="FastVMT"):
        r = run_graph(g.finalize()).raise_for_error()
    assert "guidance ran per window, 3 windows of 5 latent frames" in caplog.text
    assert r.output("stock", 0)["samples"].shape[2] == FRAMES


@pytest.mark.parametrize("frames, length, overlap", [(28, 12, 4), (28, 12, 8), (41, 21, 8), (12, 12, 4), (9, 5, 3)])
def test_the_benchmark_scores_the_seams_of_comfyuis_own_windows(comfy, frames, length, overlap):
    """bench.context_windows places its seam segments with its copy of standard_static: the same
    windows as ComfyUI's schedule."""
    import comfy.context_windows as cw
    from bench.context_windows import static_windows
    handler = cw.IndexListContextHandler(cw.get_matching_context_schedule("standard_static"),
                                         cw.get_matching_fuse_method("pyramid"), length, overlap, dim=2)
    assert static_windows(frames, length, overlap) == cw.create_windows_static_standard(frames, handler, {})
