"""Bad inputs to the FastVMT nodes inside real ComfyUI: each one fails with a
clear message naming the input, raised by our node before any sampling work."""

import pytest

from tests.helpers.graphs import (LAT_H, LAT_W, base_builder, base_graph, builder, inspect, ksampler_like,
                                  motion_from_images)

NOT_WAN = "model: FastVMT needs a Wan video DiT"


@pytest.fixture(scope="session")
def tiny_ltxv(comfy):
    """UNETLoader name: a 1-block random LTX-Video DiT (a video DiT that is not Wan)."""
    return comfy.tiny_ltxv()


def _failed_at(result, node, expected):
    """``node`` raised a message starting with ``expected``; no sampling step ran
    (no progress at all, and no sampler other than the failing node started)."""
    assert not result.success, "the graph should have failed"
    assert result.error_node == node, result.error_text()
    assert result.exception_message.startswith(expected), result.exception_message
    assert not result.events_of("progress")
    assert not {"sample", "stock"} & (set(result.executed_nodes) - {node})
    return result.exception_message


# ---- a model that is not a Wan DiT -------------------------------------------------------

def test_tiny_ltxv_loads_as_a_non_wan_model(run_graph, tiny_ltxv, fastvmt_pack):
    import comfy.ldm.lightricks.model as ltxv_model
    import comfy.ldm.wan.model as wan_model
    import comfy.model_base as model_base
    g = builder()
    inspect(g, g.node("UNETLoader", "model", unet_name=tiny_ltxv, weight_dtype="default"), "out")
    patcher = run_graph(g.finalize()).raise_for_error().output("model", 0)
    assert isinstance(patcher.model, model_base.LTXV) and not isinstance(patcher.model, model_base.WAN21)
    dm = patcher.model.diffusion_model
    assert isinstance(dm, ltxv_model.LTXVModel) and not isinstance(dm, wan_model.WanModel)
    assert len(dm.transformer_blocks) == 1


def test_extract_motion_rejects_a_non_wan_model(run_graph, tiny_ltxv, fastvmt_pack):
    r = run_graph(base_graph(tiny_ltxv))
    msg = _failed_at(r, "motion", NOT_WAN)
    assert "this model's DiT is LTXVModel" in msg


@pytest.mark.parametrize("node", ["apply", "sampler"])
def test_apply_motion_and_guidance_sampler_reject_a_non_wan_model(run_graph, tiny_wan, tiny_ltxv, fastvmt_pack,
                                                                   node):
    """The motion is extracted with a Wan model; the node that consumes it gets the other model."""
    g = base_builder(tiny_wan)
    other = g.node("UNETLoader", "other", unet_name=tiny_ltxv, weight_dtype="default")
    sample = g.lookup_node("sample")
    if node == "apply":
        g.remove_node("sample")
        g.remove_node("out")
        patched = g.node("FastVMTApplyMotion", "patched", model=other.out(0), motion=g.lookup_node("motion").out(0))
        inspect(g, ksampler_like(g, "stock", sample, model=patched.out(0), steps=2), "out")
        failing = "patched"
    else:
        sample.set_input("model", other.out(0))
        failing = "sample"
    r = run_graph(g.finalize())
    msg = _failed_at(r, failing, NOT_WAN)
    assert "this model's DiT is LTXVModel" in msg
    assert "motion" in r.executed_nodes  # extraction with the Wan model itself was fine


# ---- non-finite or empty references ------------------------------------------------------

@pytest.mark.parametrize("fill", ["nan", "inf"])
def test_non_finite_reference_latent(run_graph, tiny_wan, fastvmt_pack, fill):
    g = base_builder(tiny_wan)
    g.lookup_node("ref").set_input("fill", fill)
    _failed_at(run_graph(g.finalize()), "motion", "latent: contains NaN or infinite values")


def _images_graph(model, vae, frames, fill="random"):
    g = base_builder(model)
    vae_node = g.node("VAELoader", "vae", vae_name=vae)
    images = g.node("FastVMTTestImage", "frames", seed=5, frames=frames, height=LAT_H * 8, width=LAT_W * 8, fill=fill)
    motion_from_images(g, images, vae_node)
    return g.finalize()


def test_empty_reference_images(run_graph, tiny_wan, tiny_vae, fastvmt_pack):
    r = run_graph(_images_graph(tiny_wan, tiny_vae, frames=0))
    assert r.output("frames", 0).shape[0] == 0  # the test node really produced an empty batch
    _failed_at(r, "motion", "images: the reference has no frames")


def test_non_finite_reference_images(run_graph, tiny_wan, tiny_vae, fastvmt_pack):
    _failed_at(run_graph(_images_graph(tiny_wan, tiny_vae, frames=9, fill="nan")), "motion",
               "images: contains NaN or infinite values")


def test_test_node_fill_defaults_are_unchanged(run_graph, fastvmt_pack):
    """The fill option leaves the default outputs bit-identical and corrupts exactly one element."""
    import torch
    lat = {"seed": 3, "channels": 4, "frames": 2, "height": 4, "width": 4}
    img = {"seed": 5, "frames": 2, "height": 16, "width": 16}
    g = builder()
    made = [g.node("FastVMTTestLatent", "l0", **lat), g.node("FastVMTTestLatent", "l1", **lat, fill="random"),
            g.node("FastVMTTestLatent", "l2", **lat, fill="nan"), g.node("FastVMTTestImage", "i0", **img),
            g.node("FastVMTTestImage", "i1", **img, fill="inf")]
    for node in made:
        inspect(g, node, f"o_{node.id}")
    r = run_graph(g.finalize()).raise_for_error()
    l0, l1, l2 = (r.output(n, 0)["samples"] for n in ("l0", "l1", "l2"))
    i0, i1 = r.output("i0", 0), r.output("i1", 0)
    assert torch.equal(l0, l1)
    assert torch.isnan(l2).sum() == 1 and torch.equal(l2.flatten()[1:], l0.flatten()[1:])
    assert torch.isinf(i1).sum() == 1 and torch.equal(i1.flatten()[1:], i0.flatten()[1:])


# ---- an encoded reference latent of another size than width / height / length --------------

@pytest.mark.parametrize("wrong, inputs", [("width", {"width": 832}), ("length", {"length": 13}),
                                           ("width / height / length", {"width": 832, "height": 480, "length": 81})])
def test_extract_motion_refuses_a_latent_that_is_not_its_size(run_graph, tiny_wan, fastvmt_pack, wrong, inputs):
    """The latent (3 frames x 8x12) is used as it is, so the size inputs, which must equal the
    generation's, must be its size (96x64, 9 frames); they used to be ignored."""
    g = base_builder(tiny_wan)
    for name, value in inputs.items():
        g.lookup_node("motion").set_input(name, value)
    msg = _failed_at(run_graph(g.finalize()), "motion",
                     f"{wrong}: the connected latent (3 frames x 8x12 latent pixels) is a 96x64 video of 9 frames, "
                     "but ")
    assert all(f"{name} is {value}" in msg for name, value in inputs.items()), msg
    assert "set width 96, height 64, length 9" in msg and "'images' (with 'vae')" in msg


def test_extract_motion_sizes_a_wan22_latent_at_16_pixels(run_graph, tiny_wan48, fastvmt_pack):
    """The Wan 2.2 VAE's 48-channel latents are 16x smaller than the video, not 8x."""
    g = base_builder(tiny_wan48, channels=48)
    assert (g.lookup_node("motion").inputs["width"], g.lookup_node("motion").inputs["height"]) == (192, 128)
    g.lookup_node("motion").set_input("width", 96)
    msg = _failed_at(run_graph(g.finalize()), "motion", "width: the connected latent (3 frames x 8x12 latent "
                     "pixels) is a 192x128 video of 9 frames, but width is 96")
    assert "set width 192, height 128, length 9" in msg
