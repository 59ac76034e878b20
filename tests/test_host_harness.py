"""Proves the in-process ComfyUI harness: stock nodes, real validator and
executor, tiny random Wan models loaded by ComfyUI's own loaders."""
import sys

import pytest
import torch

import comfy_host
from comfy_host import GraphValidationError
from tests.helpers.graphs import builder


def t2v_builder(unet_name, *, seed=42, channels=16, steps=2, cfg=5.0, latent=None):
    """UNETLoader + test conditioning + empty video latent + KSampler + Inspect (ids "1".."6",
    GraphBuilder's own); ``latent``: (class_type, inputs) of another latent node."""
    g = builder()
    unet = g.node("UNETLoader", unet_name=unet_name, weight_dtype="default")
    pos = g.node("FastVMTTestConditioning", seed=1, tokens=8, text="a cat walking")
    neg = g.node("FastVMTTestConditioning", seed=2, tokens=8, text="")
    if latent is None:
        # EmptyHunyuanLatentVideo is the stock empty latent of the Wan 2.1 T2V
        # template: 16 channels, 1 + (length - 1) // 4 frames, /8 spatially.
        lat = g.node("EmptyHunyuanLatentVideo", width=64, height=64, length=5, batch_size=1)
    else:
        lat = g.node(latent[0], **latent[1])
    sample = g.node("KSampler", model=unet.out(0), positive=pos.out(0), negative=neg.out(0), latent_image=lat.out(0),
                    seed=seed, steps=steps, cfg=cfg, sampler_name="euler", scheduler="simple", denoise=1.0)
    g.node("FastVMTTestInspect", value=sample.out(0))
    return g


def t2v_graph(unet_name, **kw):
    return t2v_builder(unet_name, **kw).finalize()


def test_tiny_wan_is_detected_as_wan21(comfy, tiny_wan):
    # note: "import comfy.x" would rebind the fixture argument named comfy
    import comfy.model_base as model_base
    import comfy.sd as comfy_sd
    import folder_paths

    path = folder_paths.get_full_path("diffusion_models", tiny_wan)
    assert path is not None and path.startswith(str(comfy.base_dir))
    patcher = comfy_sd.load_diffusion_model(path)
    model = patcher.model
    assert type(model) is model_base.WAN21
    cfg = model.model_config.unet_config
    assert (cfg["dim"], cfg["num_layers"], cfg["num_heads"], cfg["in_dim"], cfg["out_dim"], cfg["ffn_dim"]) == \
        (256, 16, 2, 16, 16, 512)
    assert cfg["model_type"] == "t2v"
    assert len(model.diffusion_model.blocks) == 16


def test_t2v_sampling_runs_and_is_finite(run_graph, tiny_wan):
    res = run_graph(t2v_graph(tiny_wan))
    res.raise_for_error()
    assert res.targets == ["6"]  # the output node
    assert set(res.executed_nodes) == {"1", "2", "3", "4", "5", "6"}
    (latent,) = res.output("5")
    x = latent["samples"]
    assert x.shape == (1, 16, 2, 8, 8)
    assert torch.isfinite(x).all()
    assert 0.01 < x.float().std().item() < 1e3
    assert "execution_success" in [e for e, _ in res.events]
    assert res.events_of("progress"), "KSampler progress should be reported through the hook"


def test_same_seed_is_bit_identical_and_seed_matters(run_graph, tiny_wan):
    a = run_graph(t2v_graph(tiny_wan, seed=7)).raise_for_error().output("5", 0)["samples"]
    b = run_graph(t2v_graph(tiny_wan, seed=7)).raise_for_error().output("5", 0)["samples"]
    c = run_graph(t2v_graph(tiny_wan, seed=8)).raise_for_error().output("5", 0)["samples"]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cache_reset_by_default_and_kept_on_request(run_graph, tiny_wan):
    g = t2v_graph(tiny_wan, seed=3)
    run_graph(g).raise_for_error()
    again = run_graph(g).raise_for_error()
    assert "5" in again.executed_nodes and not again.cached_nodes
    cached = run_graph(g, keep_cache=True).raise_for_error()
    assert set(cached.cached_nodes) == {"1", "2", "3", "4", "5", "6"}
    assert cached.executed_nodes == []
    assert cached.output("5", 0)["samples"].shape == (1, 16, 2, 8, 8)


def test_output_node_ui_and_test_conditioning(run_graph):
    b = builder()  # ids "1", "2"
    cond = b.node("FastVMTTestConditioning", seed=5, tokens=11, text="x")
    b.node("FastVMTTestInspect", value=cond.out(0))
    g = b.finalize()
    res = run_graph(g).raise_for_error()
    assert res.targets == ["2"]
    (cond,) = res.output("1")
    assert len(cond) == 1 and cond[0][1] == {}
    assert cond[0][0].shape == (1, 11, 4096)
    stats = res.ui_output("2")["fastvmt_stats"][0]
    assert stats["shape"] == [1, 11, 4096] and stats["finite"]
    # deterministic (crc32-seeded, not Python hash)
    again = run_graph(g).raise_for_error().output("1", 0)[0][0]
    assert torch.equal(cond[0][0], again)


def test_validation_error_is_reported(run_graph, tiny_wan):
    g = t2v_builder(tiny_wan)
    g.lookup_node("5").set_input("sampler_name", "no_such_sampler")
    g.lookup_node("4").set_input("width", "wide")
    with pytest.raises(GraphValidationError) as ei:
        run_graph(g.finalize())
    err = ei.value
    assert set(err.node_errors) == {"4", "5"}
    assert err.node_errors["5"]["class_type"] == "KSampler"
    assert any(e["type"] == "value_not_in_list" for e in err.node_errors["5"]["errors"])
    assert "no_such_sampler" in str(err)

    g = t2v_graph("missing_model.safetensors")
    with pytest.raises(AssertionError, match="missing_model"):
        run_graph(g)

    with pytest.raises(AssertionError, match="does not exist"):
        unknown = builder()
        unknown.node("FastVMTTestNoSuchNode")
        run_graph(unknown.finalize())


def test_execution_error_is_reported(run_graph, tiny_wan):
    # valid graph, but latent channels do not fit the model -> runtime error in KSampler
    latent = ("FastVMTTestLatent", {"seed": 0, "channels": 5, "frames": 2, "height": 8, "width": 8})
    res = run_graph(t2v_graph(tiny_wan, latent=latent))
    assert not res.success
    assert res.error_node == "5"
    assert res.error["node_type"] == "KSampler"
    assert res.exception_type and res.exception_message
    assert "execution_error" in [e for e, _ in res.events]
    with pytest.raises(AssertionError, match="KSampler"):
        res.raise_for_error()


def test_wan48_model_loads_and_samples(run_graph, tiny_wan48):
    import comfy.model_base as model_base

    latent = ("FastVMTTestLatent", {"seed": 0, "channels": 48, "frames": 2, "height": 8, "width": 8, "scale": 0.0})
    res = run_graph(t2v_graph(tiny_wan48, latent=latent)).raise_for_error()
    model = res.output("1", 0).model
    assert isinstance(model, model_base.WAN21)  # WAN22 (5B) subclasses WAN21
    assert model.model_config.unet_config["in_dim"] == 48
    x = res.output("5", 0)["samples"]
    assert x.shape == (1, 48, 2, 8, 8) and torch.isfinite(x).all()


def test_vae_roundtrip(run_graph, tiny_vae):
    g = builder()  # ids "1".."5"
    vae = g.node("VAELoader", vae_name=tiny_vae)
    image = g.node("FastVMTTestImage", seed=0, frames=5, height=64, width=64)
    encoded = g.node("VAEEncode", pixels=image.out(0), vae=vae.out(0))
    decoded = g.node("VAEDecode", samples=encoded.out(0), vae=vae.out(0))
    g.node("FastVMTTestInspect", value=decoded.out(0))
    res = run_graph(g.finalize()).raise_for_error()
    vae = res.output("1", 0)
    assert vae.latent_channels == 16 and type(vae.first_stage_model).__module__ == "comfy.ldm.wan.vae"
    lat = res.output("3", 0)["samples"]
    assert lat.shape == (1, 16, 2, 8, 8) and torch.isfinite(lat).all()
    img = res.output("4", 0)
    assert img.shape == (5, 64, 64, 3) and torch.isfinite(img).all()
    assert 0.0 <= img.min().item() and img.max().item() <= 1.0 and img.std().item() > 1e-3


def test_fastvmt_pack_loads_as_custom_node(comfy):
    """The repo root is loaded with ComfyUI's own load_custom_node (as users
    load it); an import error shows up here with its traceback."""
    if not comfy.pack_present:
        pytest.skip("no FastVMT pack (__init__.py) at the repo root yet")
    names = comfy.require_pack()
    assert names, "the pack registered no nodes"
    assert all(n not in comfy.builtin_node_names for n in names)


def test_the_method_is_loaded_under_one_name(comfy):
    """The pack's nodes use the same fastvmt_core as the tests and benchmarks (the top-level
    name); no second copy exists under the package name ComfyUI gives the pack, so a setting
    made by one is the type the other checks."""
    import fastvmt_core.settings
    comfy.require_pack()
    copies = sorted(m for m in sys.modules if m.endswith(".fastvmt_core") or ".fastvmt_core." in m)
    assert not copies, f"fastvmt_core loaded a second time as {copies}"
    prefix = str(comfy_host.REPO_ROOT).replace(".", "_x_") + "."
    pack_modules = [m for name, m in list(sys.modules.items()) if name.startswith(prefix)]
    assert any(hasattr(m, "FastVMTSettings") for m in pack_modules), "no pack module uses FastVMTSettings"
    used = {m.FastVMTSettings for m in pack_modules if hasattr(m, "FastVMTSettings")}
    assert used == {fastvmt_core.settings.FastVMTSettings}
