"""Bad inputs to the FastVMT nodes inside real ComfyUI: each one fails with a
clear message naming the input, raised by our node before any sampling work."""

import pytest

from tests.test_nodes_host import LAT_H, LAT_W, base_graph

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
    g = {"model": {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_ltxv, "weight_dtype": "default"}},
         "out": {"class_type": "FastVMTTestInspect", "inputs": {"value": ["model", 0]}}}
    patcher = run_graph(g).raise_for_error().output("model", 0)
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
    g = base_graph(tiny_wan)
    g["other"] = {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_ltxv, "weight_dtype": "default"}}
    if node == "apply":
        del g["sample"], g["out"]
        g["patched"] = {"class_type": "FastVMTApplyMotion", "inputs": {"model": ["other", 0],
                                                                       "motion": ["motion", 0]}}
        g["stock"] = {"class_type": "KSampler",
                      "inputs": {"model": ["patched", 0], "seed": 7, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                 "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
                                 "latent_image": ["empty", 0], "denoise": 1.0}}
        g["out"] = {"class_type": "FastVMTTestInspect", "inputs": {"value": ["stock", 0]}}
        failing = "patched"
    else:
        g["sample"]["inputs"]["model"] = ["other", 0]
        failing = "sample"
    r = run_graph(g)
    msg = _failed_at(r, failing, NOT_WAN)
    assert "this model's DiT is LTXVModel" in msg
    assert "motion" in r.executed_nodes  # extraction with the Wan model itself was fine


# ---- non-finite or empty references ------------------------------------------------------

@pytest.mark.parametrize("fill", ["nan", "inf"])
def test_non_finite_reference_latent(run_graph, tiny_wan, fastvmt_pack, fill):
    g = base_graph(tiny_wan)
    g["ref"]["inputs"]["fill"] = fill
    _failed_at(run_graph(g), "motion", "latent: contains NaN or infinite values")


def _images_graph(model, vae, frames, fill="random"):
    g = base_graph(model)
    g["vae"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae}}
    g["frames"] = {"class_type": "FastVMTTestImage",
                   "inputs": {"seed": 5, "frames": frames, "height": LAT_H * 8, "width": LAT_W * 8, "fill": fill}}
    inputs = g["motion"]["inputs"]
    del inputs["latent"]
    inputs.update({"images": ["frames", 0], "vae": ["vae", 0], "width": LAT_W * 8, "height": LAT_H * 8,
                   "length": 9})
    return g


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
    g = {"l0": {"class_type": "FastVMTTestLatent", "inputs": dict(lat)},
         "l1": {"class_type": "FastVMTTestLatent", "inputs": dict(lat, fill="random")},
         "l2": {"class_type": "FastVMTTestLatent", "inputs": dict(lat, fill="nan")},
         "i0": {"class_type": "FastVMTTestImage", "inputs": dict(img)},
         "i1": {"class_type": "FastVMTTestImage", "inputs": dict(img, fill="inf")}}
    for n in list(g):
        g["o_" + n] = {"class_type": "FastVMTTestInspect", "inputs": {"value": [n, 0]}}
    r = run_graph(g).raise_for_error()
    l0, l1, l2 = (r.output(n, 0)["samples"] for n in ("l0", "l1", "l2"))
    i0, i1 = r.output("i0", 0), r.output("i1", 0)
    assert torch.equal(l0, l1)
    assert torch.isnan(l2).sum() == 1 and torch.equal(l2.flatten()[1:], l0.flatten()[1:])
    assert torch.isinf(i1).sum() == 1 and torch.equal(i1.flatten()[1:], i0.flatten()[1:])
