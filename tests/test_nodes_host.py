"""The FastVMT nodes inside real ComfyUI, through its real executor, on tiny
random-weight Wan models loaded by ComfyUI's own loaders."""

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfy_host import GraphValidationError
from fastvmt_core import FastVMTSettings
from tests.helpers.graphs import (BLOCK, FRAMES, LAT_H, LAT_W, base_builder, base_graph, inspect, ksampler_like,
                                  motion_from_images, replace_node, report, samples)


def test_pack_nodes_registered(fastvmt_pack):
    assert {"FastVMTExtractMotion", "FastVMTStepSkipSettings", "FastVMTGuidanceSampler", "FastVMTApplyMotion",
            "FastVMTSaveMotion", "FastVMTLoadMotion"} <= set(fastvmt_pack)


def test_guided_run_changes_latent_and_lowers_motion_loss(run_graph, tiny_wan, fastvmt_pack):
    guided = run_graph(base_graph(tiny_wan)).raise_for_error()
    plain = run_graph(base_graph(tiny_wan, settings={"mode": "No_transfer"})).raise_for_error()
    x_g, x_p = samples(guided), samples(plain)
    assert x_g.shape == (1, 16, FRAMES, LAT_H, LAT_W) and torch.isfinite(x_g).all()
    assert not torch.equal(x_g, x_p)
    rep = report(guided)
    assert rep["n_guided"] == 1  # 20% of 5 steps
    (step,) = rep["steps"]
    assert step["gradient_evaluations"] == math.ceil(10 / 3) == len(step["losses"])
    assert step["losses"][-1] < step["losses"][0]
    assert "FastVMT effi_AMF: guided 1/1 of 5 steps" in guided.ui_output("sample")["text"][0]


def test_no_transfer_equals_stock_ksampler_bit_for_bit(run_graph, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan, settings={"mode": "No_transfer"})
    inspect(g, ksampler_like(g, "stock", g.lookup_node("sample")), "out2")
    r = run_graph(g.finalize()).raise_for_error()
    assert torch.equal(samples(r), samples(r, "stock"))


def test_early_exit_evaluates_exactly_blocks_up_to_the_motion_block(run_graph, comfy, fastvmt_pack, tmp_path):
    """Blocks after the motion block and the head hold NaN weights: guidance passes must
    stay finite (they never run them), while the ordinary denoising steps turn NaN."""
    sd = load_file(comfy.model_dir("diffusion_models") / comfy.tiny_wan(num_layers=8))
    for key in list(sd):
        if key.startswith("head.") or any(key.startswith(f"blocks.{i}.") for i in range(BLOCK + 1, 8)):
            sd[key] = torch.full_like(sd[key], float("nan"))
    path = tmp_path / "nan_after_block.safetensors"
    save_file(sd, str(path))
    name = comfy.add_model_file("diffusion_models", path)
    r = run_graph(base_graph(name, steps=5)).raise_for_error()
    rep = report(r)
    (step,) = rep["steps"]
    assert step["stopped"] is None and all(math.isfinite(v) for v in step["losses"])
    passes = 1 + math.ceil(10 / 3)  # reference pass + gradient passes
    assert rep["dit_passes"] == passes
    assert rep["block_evaluations"] == passes * (BLOCK + 1)
    assert not torch.isfinite(samples(r)).all()  # the stock steps did run every block


def test_stock_samplers_through_apply_motion_match_guidance_sampler(run_graph, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan)
    unet, sample = g.lookup_node("model"), g.lookup_node("sample")
    patched = g.node("FastVMTApplyMotion", "patched", model=unet.out(0), motion=g.lookup_node("motion").out(0))
    stock = ksampler_like(g, "stock", sample, model=patched.out(0))
    adv = g.node("KSamplerAdvanced", "adv", model=patched.out(0), add_noise="enable", noise_seed=7, steps=5, cfg=1.0,
                 sampler_name="euler", scheduler="simple", positive=g.lookup_node("pos").out(0),
                 negative=g.lookup_node("neg").out(0), latent_image=g.lookup_node("empty").out(0), start_at_step=0,
                 end_at_step=10000, return_with_leftover_noise="disable")
    plain = ksampler_like(g, "plain", sample)
    for n in (stock, adv, plain):
        inspect(g, n)
    r = run_graph(g.finalize()).raise_for_error()
    assert torch.equal(samples(r, "stock"), samples(r))  # one implementation serves both paths
    assert torch.equal(samples(r, "adv"), samples(r))
    assert not torch.equal(samples(r, "plain"), samples(r))


def test_sampler_custom_advanced_runs_guidance(run_graph, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan)
    g.remove_node("sample")
    g.remove_node("out")
    unet, pos, empty = g.lookup_node("model"), g.lookup_node("pos"), g.lookup_node("empty")
    patched = g.node("FastVMTApplyMotion", "patched", model=unet.out(0), motion=g.lookup_node("motion").out(0))
    guider = g.node("BasicGuider", "guider", model=patched.out(0), conditioning=pos.out(0))
    plain_guider = g.node("BasicGuider", "plain_guider", model=unet.out(0), conditioning=pos.out(0))
    sampler = g.node("KSamplerSelect", "sampler", sampler_name="dpmpp_2m")
    sigmas = g.node("BasicScheduler", "sigmas", model=unet.out(0), scheduler="simple", steps=5, denoise=1.0)
    noise = g.node("RandomNoise", "noise", noise_seed=7)
    custom = g.node("SamplerCustomAdvanced", "custom", noise=noise.out(0), guider=guider.out(0),
                    sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=empty.out(0))
    plain = g.node("SamplerCustomAdvanced", "plain", noise=noise.out(0), guider=plain_guider.out(0),
                   sampler=sampler.out(0), sigmas=sigmas.out(0), latent_image=empty.out(0))
    inspect(g, custom, "o1")
    inspect(g, plain, "o2")
    r = run_graph(g.finalize()).raise_for_error()
    a, b = r.output("custom", 0)["samples"], r.output("plain", 0)["samples"]
    assert torch.isfinite(a).all() and not torch.equal(a, b)


@pytest.mark.parametrize("sampler,denoise", [("dpmpp_2m", 1.0), ("uni_pc", 1.0), ("euler", 0.75)])
def test_other_samplers_and_partial_denoise(run_graph, tiny_wan, fastvmt_pack, sampler, denoise):
    r = run_graph(base_graph(tiny_wan, sampler=sampler, denoise=denoise, steps=6)).raise_for_error()
    assert torch.isfinite(samples(r)).all()
    assert report(r)["n_guided"] == 1 and report(r)["steps"][0]["gradient_evaluations"] == 4


def test_progress_covers_inner_steps(run_graph, tiny_wan, fastvmt_pack):
    r = run_graph(base_graph(tiny_wan, steps=10, settings={"guided_fraction": 0.2})).raise_for_error()
    sample_progress = [d for d in r.events_of("progress") if d.get("node") == "sample"]
    values = [d["value"] for d in sample_progress]
    total = 10 + 2 * 10  # outer steps + guided steps x inner steps
    assert {d["max"] for d in sample_progress} == {total}
    assert values == sorted(values) and values[-1] == total and len(values) >= total


def test_30_block_model_default_block_and_48_channel_model(run_graph, tiny_wan30, tiny_wan48, fastvmt_pack):
    r = run_graph(base_graph(tiny_wan30, block=14)).raise_for_error()
    assert report(r)["block_evaluations"] == report(r)["dit_passes"] * 15
    r48 = run_graph(base_graph(tiny_wan48, channels=48)).raise_for_error()
    assert samples(r48).shape[1] == 48 and torch.isfinite(samples(r48)).all()


def test_video_reference_through_vae(run_graph, tiny_wan, tiny_vae, fastvmt_pack):
    g = base_builder(tiny_wan)
    vae = g.node("VAELoader", "vae", vae_name=tiny_vae)
    frames = g.node("FastVMTTestImage", "frames", seed=5, frames=11, height=72, width=80)
    motion_from_images(g, frames, vae)
    r = run_graph(g.finalize()).raise_for_error()
    text = r.ui_output("motion")["text"][0]
    assert "3 latent frames, 4x6 token grid" in text
    assert "reference: 11 frames of 80x72" in text and "used the first 9" in text
    assert f"resized and centre-cropped to {LAT_W * 8}x{LAT_H * 8}" in text
    assert torch.isfinite(samples(r)).all()


# ---- bad inputs: a clear message naming the input, before sampling -------------------

def _error(run_graph, graph):
    r = run_graph(graph)
    assert not r.success
    return r.exception_message


def test_block_index_out_of_range(run_graph, tiny_wan, fastvmt_pack):
    msg = _error(run_graph, base_graph(tiny_wan, block=16))
    assert "motion_block: block index 16 is out of range" in msg and "16 blocks" in msg


def test_reference_size_mismatch(run_graph, tiny_wan, fastvmt_pack):
    r = run_graph(base_graph(tiny_wan, ref_frames=2))
    assert not r.success and r.error_node == "sample"
    assert "the reference latent is 2 frames x 8x12 but the latent being sampled is 3 frames" in r.exception_message
    assert not any(d.get("node") == "sample" for d in r.events_of("progress"))  # failed before any step


def test_channel_mismatch(run_graph, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan)
    g.lookup_node("ref").set_input("channels", 48)
    msg = _error(run_graph, g.finalize())
    assert "48 channels but this model uses 16" in msg


def test_images_without_vae_and_both_sources(run_graph, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan)
    frames = g.node("FastVMTTestImage", "frames", seed=5, frames=9, height=64, width=96)
    motion = g.lookup_node("motion")
    motion.set_input("images", frames.out(0))
    msg = _error(run_graph, g.finalize())
    assert "connect either reference images (with vae) or an encoded latent, not both" in msg
    motion.set_input("latent", None)
    assert "vae: connect the Wan VAE" in _error(run_graph, g.finalize())


def test_bad_settings_are_rejected_by_validation(run_graph, tiny_wan, fastvmt_pack):
    with pytest.raises(GraphValidationError, match="interval"):
        run_graph(base_graph(tiny_wan, settings={"interval": 0}))


def test_lr_settings_error_names_the_field(run_graph, tiny_wan, fastvmt_pack):
    msg = _error(run_graph, base_graph(tiny_wan, settings={"lambda_amf": 0.0, "lambda_window": 0.0}))
    assert "FastVMT settings: lambda_amf and lambda_window are both 0" in msg


# ---- the input MODEL is never modified --------------------------------------------------

def _model_state(patcher):
    opts = patcher.model_options
    return (repr(sorted(opts.get("transformer_options", {}).keys())),
            repr(opts.get("transformer_options", {}).get("patches_replace")),
            repr({k: sorted(v) for k, v in patcher.wrappers.items()}))


def test_input_model_unchanged_after_success_and_error(run_graph, tiny_wan, fastvmt_pack):
    ok = run_graph(base_graph(tiny_wan)).raise_for_error()
    model = ok.output("model", 0)
    assert "fastvmt" not in repr(model.wrappers) and model.model_options.get("transformer_options", {}).get(
        "patches_replace") is None
    before = _model_state(model)
    bad = run_graph(base_graph(tiny_wan, ref_frames=2))
    assert not bad.success
    assert _model_state(bad.output("model", 0)) == before


def test_interrupt_stops_within_one_inner_step(run_graph, comfy, tiny_wan, fastvmt_pack, monkeypatch):
    seen = comfy.interrupt_at_progress(monkeypatch, "sample", 3)
    r = run_graph(base_graph(tiny_wan, steps=5))
    assert not r.success
    assert r.events_of("execution_interrupted")
    assert seen[-1] <= 4  # stopped at the next inner step
    monkeypatch.undo()
    # The next run is unaffected: nothing of the interrupted run survived.
    again = run_graph(base_graph(tiny_wan)).raise_for_error()
    assert report(again)["steps"][0]["gradient_evaluations"] == 4
    assert "fastvmt" not in repr(again.output("model", 0).wrappers)


# ---- Save / Load Motion -----------------------------------------------------------------

def test_save_and_load_motion_round_trip(run_graph, comfy, tiny_wan, fastvmt_pack):
    g = base_builder(tiny_wan)
    g.node("FastVMTSaveMotion", "save", motion=g.lookup_node("motion").out(0), filename_prefix="fastvmt/t")
    r = run_graph(g.finalize()).raise_for_error()
    saved = r.ui_output("save")["fastvmt_motion"][0]
    src = comfy.output_dir / saved["subfolder"] / saved["filename"]
    shutil.copy(src, comfy.input_dir / "shared_motion.safetensors")
    g2 = base_builder(tiny_wan)
    replace_node(g2, "motion", "FastVMTLoadMotion", motion_file="shared_motion.safetensors")
    r2 = run_graph(g2.finalize()).raise_for_error()
    original, loaded = r.output("motion", 0), r2.output("motion", 0)
    assert torch.equal(original.latent, loaded.latent)
    assert original.settings == loaded.settings and original.geometry == loaded.geometry
    assert torch.equal(samples(r), samples(r2))  # same motion, same generation


def test_load_motion_rejects_newer_version_and_foreign_files(run_graph, comfy, tiny_wan, fastvmt_pack):
    save_file({"reference_latent": torch.zeros(1, 16, 3, 8, 12)}, str(comfy.input_dir / "future.safetensors"),
              metadata={"format": "fastvmt-motion", "version": "99", "settings": "{}"})
    save_file({"x": torch.zeros(2)}, str(comfy.input_dir / "other.safetensors"), metadata={"format": "lora"})
    for name, expected in (("future.safetensors", "format version '99'"),
                           ("other.safetensors", "is not a FastVMT motion")):
        g = base_builder(tiny_wan)
        replace_node(g, "motion", "FastVMTLoadMotion", motion_file=name)
        r = run_graph(g.finalize())
        assert not r.success and expected in r.exception_message


def test_loaded_motion_from_other_geometry_is_a_clear_error(run_graph, comfy, tiny_wan, tiny_wan48, fastvmt_pack):
    g = base_builder(tiny_wan48, channels=48)
    g.node("FastVMTSaveMotion", "save", motion=g.lookup_node("motion").out(0), filename_prefix="fastvmt/g")
    r = run_graph(g.finalize()).raise_for_error()
    saved = r.ui_output("save")["fastvmt_motion"][0]
    shutil.copy(comfy.output_dir / saved["subfolder"] / saved["filename"], comfy.input_dir / "m48.safetensors")
    g2 = base_builder(tiny_wan)
    replace_node(g2, "motion", "FastVMTLoadMotion", motion_file="m48.safetensors")
    r2 = run_graph(g2.finalize())
    assert not r2.success and "48 channels but this model samples 16-channel latents" in r2.exception_message


@pytest.mark.parametrize("exit_block,blocks_per_pass", [(-1, BLOCK + 1), (6, 7), (999, 16)])
def test_exit_block_setting(run_graph, tiny_wan, fastvmt_pack, exit_block, blocks_per_pass):
    """The advanced exit block reproduces the released code's truncation (and a full forward)
    for benchmarks; the guided latent does not depend on where the pass stops."""
    r = run_graph(base_graph(tiny_wan, settings={"exit_block": exit_block})).raise_for_error()
    rep = report(r)
    assert rep["block_evaluations"] == rep["dit_passes"] * blocks_per_pass
    early = run_graph(base_graph(tiny_wan)).raise_for_error()
    torch.testing.assert_close(samples(r), samples(early), atol=1e-5, rtol=1e-5)


# ---- one source for every default ---------------------------------------------------------

def test_node_defaults_and_order_come_from_the_settings_dataclass(comfy, fastvmt_pack):
    import nodes
    from fastvmt_core import STEP_SKIP_FIELDS, FastVMTSettings
    d = FastVMTSettings()
    spec = nodes.NODE_CLASS_MAPPINGS["FastVMTStepSkipSettings"].INPUT_TYPES()
    inputs = {**spec["required"], **spec.get("optional", {})}
    assert tuple(inputs) == STEP_SKIP_FIELDS
    assert {name: cfg[1]["default"] for name, cfg in inputs.items()} == d.step_skip_inputs()
    extract = nodes.NODE_CLASS_MAPPINGS["FastVMTExtractMotion"].INPUT_TYPES()["required"]
    assert (extract["motion_block"][1]["default"], extract["temporal_span"][1]["default"], extract["window"][1][
        "default"], (extract["tile_rows"][1]["default"], extract["tile_cols"][1]["default"]),
        extract["tau"][1]["default"]) == (d.motion_block, d.temporal_span, d.window, d.tile, d.tau)


def test_settings_from_an_older_workflow_still_load(run_graph, tiny_wan, fastvmt_pack):
    """Workflows saved before reference_sigma_cap / exit_block existed lack both inputs."""
    g = base_builder(tiny_wan, settings={})
    for name in ("reference_sigma_cap", "exit_block"):
        g.lookup_node("settings").set_input(name, None)
    r = run_graph(g.finalize()).raise_for_error()
    assert report(r)["steps"][0]["reference_sigma"] == pytest.approx(FastVMTSettings().reference_sigma_cap)


def test_previews_during_guidance_show_the_latent_being_optimised(run_graph, tiny_wan, fastvmt_pack, monkeypatch):
    """With previews on, each inner step's preview is the latent as the optimiser leaves it,
    so it changes from one inner step to the next (not the outer step's input, repeated)."""
    import numpy as np
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    from server import BinaryEventTypes
    monkeypatch.setattr(latent_preview.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    inner = 4
    r = run_graph(base_graph(tiny_wan, steps=5, settings={"inner_steps": inner, "interval": 1, "lr_start": 0.2,
                                                          "lr_end": 0.2})).raise_for_error()
    previews = [np.asarray(d[1], dtype=np.int16) for e, d in r.events if e == BinaryEventTypes.UNENCODED_PREVIEW_IMAGE]
    assert len(previews) == 5 + inner  # one guided step: its inner steps, then the five outer steps
    first_step = previews[:inner]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(first_step, first_step[1:]))
