"""Motion controls (motion_strength, transfer, reference / generation masks) through ComfyUI's
real executor on the tiny random Wan of tests/helpers/graphs.py. The masks come from ComfyUI's
own mask nodes (SolidMask, MaskComposite), as a user's would from any pack."""

import pytest
import torch

from comfy_host import GraphValidationError
from tests.helpers.graphs import LAT_H, LAT_W, base_builder, inspect, ksampler_like, report, samples

PX_H, PX_W = LAT_H * 8, LAT_W * 8   # the video's pixel size (64 x 96)
GUIDED = {"inner_steps": 4, "interval": 1, "lr_start": 0.05, "lr_end": 0.05}


def with_mask(g, name, *, width=PX_W, height=PX_H, box=None, value=1.0, into="sample"):
    """A MASK made by SolidMask (and a white box composited onto a black one), connected
    to ``into``'s input ``name``. ``g``: a GraphBuilder."""
    if box is None:
        mask = g.node("SolidMask", name, value=value, width=width, height=height)
    else:
        x, y, w, h = box
        bg = g.node("SolidMask", name + "_bg", value=0.0, width=width, height=height)
        fg = g.node("SolidMask", name + "_box", value=1.0, width=w, height=h)
        mask = g.node("MaskComposite", name, destination=bg.out(0), source=fg.out(0), x=x, y=y, operation="add")
    g.lookup_node(into).set_input(name, mask.out(0))
    return g


def text(result, node="sample"):
    return result.ui_output(node)["text"][0]


def test_strength_one_transfer_all_is_todays_result(run_graph, tiny_wan, fastvmt_pack):
    """Explicit defaults, a Step-Skip Settings saved before the controls existed, and no settings
    node give one latent, bit for bit; an everywhere-true generation mask runs the controlled
    loss with neutral settings and gives the same latent to float precision."""
    today = samples(run_graph(base_builder(tiny_wan).finalize()).raise_for_error())
    explicit = run_graph(base_builder(tiny_wan, settings={"motion_strength": 1.0, "transfer": "all"}).finalize())
    explicit.raise_for_error()
    assert torch.equal(samples(explicit), today)
    assert "motion controls" not in text(explicit)
    old = base_builder(tiny_wan, settings={})
    for name in ("motion_strength", "transfer"):
        old.lookup_node("settings").set_input(name, None)
    assert torch.equal(samples(run_graph(old.finalize()).raise_for_error()), today)
    everywhere = run_graph(with_mask(base_builder(tiny_wan), "generation_mask").finalize()).raise_for_error()
    torch.testing.assert_close(samples(everywhere), today, atol=1e-4, rtol=1e-4)
    assert "generation_mask: 100% of the token grid" in text(everywhere)
    stronger = run_graph(base_builder(tiny_wan, settings={"motion_strength": 2.0}).finalize()).raise_for_error()
    assert not torch.equal(samples(stronger), today)


def test_zero_learning_rate_with_every_control_equals_plain_sampling(run_graph, tiny_wan, fastvmt_pack):
    for transfer in ("camera", "objects"):
        zero = {**GUIDED, "lr_start": 0.0, "lr_end": 0.0, "motion_strength": 2.0, "transfer": transfer}
        g = with_mask(base_builder(tiny_wan, settings=zero), "generation_mask", box=(0, 0, PX_W // 2, PX_H))
        g = with_mask(g, "reference_mask", box=(0, 0, PX_W * 3 // 4, PX_H))
        settings, sample = g.lookup_node("settings"), g.lookup_node("sample")
        plain_settings = g.node("FastVMTStepSkipSettings", "plain_settings", **{**settings.inputs, "mode": "No_transfer"})
        plain = g.node("FastVMTGuidanceSampler", "plain", **{**sample.inputs, "settings": plain_settings.out(0)})
        inspect(g, plain, "out_plain")
        r = run_graph(g.finalize()).raise_for_error()
        assert report(r)["steps"] and torch.equal(samples(r), samples(r, "plain"))
        assert "no guided steps; plain sampling (reference_mask / generation_mask not used)" in text(r, "plain")


def test_latent_outside_the_generation_mask_gets_no_gradient(run_graph, tiny_wan, fastvmt_pack):
    """The left half of the video is guided; guidance leaves the latent of the right half
    exactly as it was (its tokens have no gradient and AdamW's decay is undone), through the
    Guidance Sampler and through Apply FastVMT Motion + KSampler alike."""
    g = with_mask(base_builder(tiny_wan, settings=GUIDED), "generation_mask", box=(0, 0, PX_W // 2, PX_H))
    patched = g.node("FastVMTApplyMotion", "patched", model=g.lookup_node("model").out(0),
                     motion=g.lookup_node("motion").out(0), settings=g.lookup_node("settings").out(0),
                     generation_mask=g.lookup_node("generation_mask").out(0))
    stock = ksampler_like(g, "stock", g.lookup_node("sample"), model=patched.out(0))
    stock.set_input("generation_mask", None)  # the mask reaches the stock KSampler through the patched model
    inspect(g, stock, "out_stock")
    r = run_graph(g.finalize()).raise_for_error()
    (step,) = report(r)["steps"]
    assert step["change_outside"] == 0.0 and step["change_inside"] > 1e-3
    assert step["losses"][-1] < step["losses"][0]
    assert report(r)["controls"]["generation_mask_share"] == pytest.approx(0.5)
    assert "latent change by guidance: up to" in text(r) and "inside the generation mask, 0 outside" in text(r)
    assert torch.equal(samples(r, "stock"), samples(r))


def test_camera_and_objects_transfers_run_and_report_the_reference_motion(run_graph, tiny_wan, fastvmt_pack):
    latents = {}
    for transfer in ("camera", "objects"):
        r = run_graph(base_builder(tiny_wan, settings={**GUIDED, "transfer": transfer}).finalize()).raise_for_error()
        rep = report(r)
        assert rep["controls"]["transfer"] == transfer and rep["steps"][0]["losses"][-1] < rep["steps"][0]["losses"][0]
        assert rep["controls"]["reference_camera"] >= 0 and rep["controls"]["reference_objects"] >= 0
        assert f"motion controls: motion_strength 1, transfer '{transfer}'" in text(r)
        latents[transfer] = samples(r)
    assert not torch.equal(latents["camera"], latents["objects"])


def test_mask_of_another_aspect_is_cropped_with_a_warning_in_the_summary(run_graph, tiny_wan, fastvmt_pack):
    g = with_mask(base_builder(tiny_wan, settings=GUIDED), "reference_mask", width=160, height=90)
    r = run_graph(g.finalize()).raise_for_error()
    assert ("warning: reference_mask: the mask is 160x90 (1.78:1) but the video is 1.50:1; it was "
            "centre-cropped to 135x90") in text(r)
    assert report(r)["controls"]["warnings"]


def test_bad_control_inputs_fail_before_sampling_naming_the_input(run_graph, tiny_wan, fastvmt_pack):
    r = run_graph(with_mask(base_builder(tiny_wan), "generation_mask", value=0.0).finalize())
    assert not r.success and "generation_mask: the mask selects nothing" in r.exception_message
    assert not any(d.get("node") == "sample" for d in r.events_of("progress"))
    g = with_mask(base_builder(tiny_wan), "generation_mask", box=(0, 0, PX_W // 2, PX_H))
    g = with_mask(g, "reference_mask", box=(PX_W // 2, 0, PX_W // 2, PX_H))
    r = run_graph(g.finalize())
    assert not r.success and "the two regions do not overlap" in r.exception_message
    with pytest.raises(GraphValidationError, match="motion_strength"):
        run_graph(base_builder(tiny_wan, settings={"motion_strength": -1.0}).finalize())
