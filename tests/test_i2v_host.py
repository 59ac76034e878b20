"""Image-to-video motion transfer in the real executor, with tiny random I2V models of the
three layouts Wan users run, loaded by ComfyUI's own loaders:

* Wan 2.1 I2V (in_dim 36, CLIP-vision image branch) and Wan 2.2 14B I2V (in_dim 36, no
  image branch), conditioned by the stock WanImageToVideo (and CLIPVisionEncode, on a
  toy CLIP vision model of the ViT-H layout): the reference pass gets the reference's
  own first frame, built as WanImageToVideo builds the generation's.
* Wan 2.2 TI2V 5B (48 channels), with the stock Wan22ImageToVideoLatent and a
  random-weight Wan 2.2 VAE: the start image's latent frame is held by a noise mask;
  guidance leaves it unchanged and shows it to the model as sampling does. The same for
  a T2V model under SetLatentNoiseMask (ComfyUI's re-noising inpaint path).

Every model call is recorded by the test node FastVMTTestRecordModelCalls (an
APPLY_MODEL wrapper), so the tests see what the reference and generation passes receive.
"""

import pytest
import torch

from bench.sampling import settings_inputs
from tests.helpers.graphs import builder, replace_node, report, samples

SIZE, LENGTH = 64, 5            # pixels, frames: Wan 2.1 VAE latent 2 x 8 x 8
SIZE_5B = 128                   # Wan 2.2 VAE (/16): latent 2 x 8 x 8
EXTRACT = dict(motion_block=1, temporal_span=1, window=3, tile_rows=1, tile_cols=1, tau=1.0)
GUIDED = dict(inner_steps=3, interval=1, guided_fraction=0.5, lr_start=0.05, lr_end=0.05)
ZERO_LR = dict(GUIDED, lr_start=0.0, lr_end=0.0)
TINY = dict(dim=128, num_layers=3, ffn_dim=256)


@pytest.fixture(scope="module")
def models(comfy, fastvmt_pack):
    return {
        "wan21_i2v": comfy.tiny_wan(in_dim=36, out_dim=16, model_type="i2v", **TINY),
        "wan22_i2v": comfy.tiny_wan(in_dim=36, out_dim=16, **TINY),
        "ti2v": comfy.tiny_wan(in_dim=48, out_dim=48, **TINY),
        "t2v": comfy.tiny_wan(in_dim=16, out_dim=16, **TINY),
    }


@pytest.fixture()
def records():
    import nodes
    cls = nodes.NODE_CLASS_MAPPINGS["FastVMTTestRecordModelCalls"]
    cls.records.clear()
    yield cls.records
    cls.records.clear()


def concat_builder(model, vae, *, clip=True, settings=GUIDED, start=True, ref_size=SIZE, extract_clip=None,
                   expected=False):
    """WanImageToVideo generation with a start image and Extract Motion on a reference clip;
    with ``expected``, also WanImageToVideo / CLIPVisionEncode on the reference's first frame
    ("expected_*")."""
    g = builder()
    unet = g.node("UNETLoader", "model", unet_name=model, weight_dtype="default")
    rec = g.node("FastVMTTestRecordModelCalls", "rec", model=unet.out(0))
    vae = g.node("VAELoader", "vae", vae_name=vae)
    pos = g.node("FastVMTTestConditioning", "pos", seed=1, tokens=8, text="a fox")
    neg = g.node("FastVMTTestConditioning", "neg", seed=2, tokens=8, text="")
    image = g.node("FastVMTTestImage", "start", seed=11, frames=1, height=SIZE, width=SIZE)
    clip_frames = g.node("FastVMTTestImage", "ref_frames", seed=12, frames=LENGTH, height=ref_size, width=ref_size)
    first = g.node("ImageFromBatch", "ref_first", image=clip_frames.out(0), batch_index=0, length=1)
    size = dict(width=SIZE, height=SIZE, length=LENGTH, batch_size=1)
    gen = g.node("WanImageToVideo", "i2v", positive=pos.out(0), negative=neg.out(0), vae=vae.out(0), **size)
    if expected:
        expected = g.node("WanImageToVideo", "expected_i2v", positive=pos.out(0), negative=neg.out(0),
                          vae=vae.out(0), start_image=first.out(0), **size)
        g.node("FastVMTTestInspect", "out_expected", value=expected.out(0))
    if start:
        gen.set_input("start_image", image.out(0))
    motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), images=clip_frames.out(0), vae=vae.out(0),
                    width=SIZE, height=SIZE, length=LENGTH, **EXTRACT)
    if clip:
        vision = g.node("FastVMTTestClipVision", "clip_vision", seed=0)
        gen.set_input("clip_vision_output", g.node("CLIPVisionEncode", "start_clip", clip_vision=vision.out(0),
                                                   image=image.out(0), crop="none").out(0))
        if expected:
            ref_clip = g.node("CLIPVisionEncode", "expected_clip", clip_vision=vision.out(0), image=first.out(0),
                              crop="none")
            expected.set_input("clip_vision_output", ref_clip.out(0))
        if extract_clip is not False:
            motion.set_input("clip_vision", vision.out(0))
    sample = g.node("FastVMTGuidanceSampler", "sample", model=rec.out(0), seed=7, steps=4, cfg=1.0,
                    sampler_name="euler", scheduler="simple", positive=gen.out(0), negative=gen.out(1),
                    latent_image=gen.out(2), denoise=1.0, motion=motion.out(0),
                    settings=g.node("FastVMTStepSkipSettings", "settings", **settings_inputs(**settings)).out(0))
    g.node("FastVMTTestInspect", "out", value=sample.out(0))
    return g


def concat_graph(model, vae, **kw):
    return concat_builder(model, vae, **kw).finalize()


def _latent_in(x):
    import comfy.latent_formats
    return comfy.latent_formats.Wan21().process_in(x)


def _same(a, b, tol=1e-5):
    return a is not None and b is not None and a.shape == b.shape and torch.allclose(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("layout", ["wan21_i2v", "wan22_i2v"])
def test_reference_pass_gets_its_own_first_frame(run_graph, models, tiny_vae, records, layout):
    clip = layout == "wan21_i2v"
    r = run_graph(concat_graph(models[layout], tiny_vae, clip=clip, expected=True)).raise_for_error()
    motion = r.output("motion", 0)
    img = motion.image
    assert img is not None and img.kind == "concat"
    # Extract Motion prepares what WanImageToVideo builds from the reference's first frame.
    expected = r.output("expected_i2v", 0)[0][1]
    assert _same(img.concat_latent, expected["concat_latent_image"].float().cpu())
    assert torch.equal(img.mask, expected["concat_mask"].float().cpu())
    if clip:
        assert _same(img.clip_vision, r.output("expected_clip", 0).penultimate_hidden_states.float().cpu())
    else:
        assert img.clip_vision is None

    gen_cond = r.output("i2v", 0)[0][1]
    gen_concat = _latent_in(gen_cond["concat_latent_image"].float().cpu())
    ref_concat = _latent_in(img.concat_latent)
    assert not _same(gen_concat, ref_concat)
    ref_calls = [c for c in records if _same(c["c_concat"][:, 4:], ref_concat)]
    gen_calls = [c for c in records if _same(c["c_concat"][:, 4:], gen_concat)]
    assert len(ref_calls) + len(gen_calls) == len(records)  # every call has one of the two images
    rep = report(r)
    text = r.ui_output("sample")["text"][0]
    assert "reference pass conditioned on its own first frame" in text
    assert ("CLIP-vision tokens" in text) == clip
    # the reference's tokens come from its uncropped frame: the summary says how to match them
    assert ("crop 'none'" in text) == clip
    assert len(ref_calls) == len({s["reference_sigma"] for s in rep["steps"]}) >= 1  # one per reference sigma
    assert not any(c["grad"] for c in ref_calls)
    assert sum(c["grad"] for c in gen_calls) == sum(s["gradient_evaluations"] for s in rep["steps"]) > 0
    if clip:
        start_tokens = r.output("start_clip", 0).penultimate_hidden_states.float().cpu()
        assert all(_same(c["clip_fea"], img.clip_vision) for c in ref_calls)
        assert all(_same(c["clip_fea"], start_tokens) for c in gen_calls)
    else:
        assert all(c["clip_fea"] is None for c in records)


def test_zero_lr_i2v_equals_plain_sampling(run_graph, models, tiny_vae):
    # Wan 2.1 I2V: concat image and CLIP-vision tokens (Wan 2.2 14B I2V has the concat only).
    layout, clip = "wan21_i2v", True
    guided = run_graph(concat_graph(models[layout], tiny_vae, clip=clip, settings=ZERO_LR)).raise_for_error()
    plain = run_graph(concat_graph(models[layout], tiny_vae, clip=clip, settings=dict(ZERO_LR, mode="No_transfer")),
                      keep_cache=True).raise_for_error()  # loaders and encoders from the first run
    assert report(guided)["n_guided"] == 2
    assert torch.equal(samples(guided), samples(plain))


def masked_builder(model, *, ti2v, vae=None, settings=GUIDED, guided=True):
    """A latent whose first frame is held by a noise mask: Wan22ImageToVideoLatent (TI2V), or a
    T2V latent under SetLatentNoiseMask. Apply FastVMT Motion + KSamplerAdvanced stopping after
    the first (guided) step with its leftover noise, so the returned latent is the sampler's own
    latent, held entries included."""
    g = builder()
    unet = g.node("UNETLoader", "model", unet_name=model, weight_dtype="default")
    rec = g.node("FastVMTTestRecordModelCalls", "rec", model=unet.out(0))
    pos = g.node("FastVMTTestConditioning", "pos", seed=1, tokens=8, text="a fox")
    neg = g.node("FastVMTTestConditioning", "neg", seed=2, tokens=8, text="")
    if ti2v:
        vae_node = g.node("VAELoader", "vae", vae_name=vae)
        start = g.node("FastVMTTestImage", "start", seed=11, frames=1, height=SIZE_5B, width=SIZE_5B)
        latent = g.node("Wan22ImageToVideoLatent", "latent", vae=vae_node.out(0), width=SIZE_5B, height=SIZE_5B,
                        length=LENGTH, batch_size=1, start_image=start.out(0))
        clip_frames = g.node("FastVMTTestImage", "ref_frames", seed=12, frames=LENGTH, height=SIZE_5B, width=SIZE_5B)
        motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), images=clip_frames.out(0),
                        vae=vae_node.out(0), width=SIZE_5B, height=SIZE_5B, length=LENGTH, **EXTRACT)
    else:
        given = g.node("FastVMTTestLatent", "given", seed=5, channels=16, frames=2, height=8, width=8)
        mask = g.node("FastVMTTestFrameMask", "mask", frames=2, height=8, width=8, held_frames=1)
        latent = g.node("SetLatentNoiseMask", "latent", samples=given.out(0), mask=mask.out(0))
        ref = g.node("FastVMTTestLatent", "ref", seed=3, channels=16, frames=2, height=8, width=8)
        motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), latent=ref.out(0), width=SIZE,
                        height=SIZE, length=LENGTH, **EXTRACT)
    model_out = rec.out(0)
    if guided:
        model_out = g.node("FastVMTApplyMotion", "apply", model=rec.out(0), motion=motion.out(0),
                           settings=g.node("FastVMTStepSkipSettings", "settings",
                                           **settings_inputs(**settings)).out(0)).out(0)
    sample = g.node("KSamplerAdvanced", "sample", model=model_out, add_noise="enable", noise_seed=7, steps=4,
                    cfg=1.0, sampler_name="euler", scheduler="simple", positive=pos.out(0), negative=neg.out(0),
                    latent_image=latent.out(0), start_at_step=0, end_at_step=1, return_with_leftover_noise="enable")
    g.node("FastVMTTestInspect", "out", value=sample.out(0))
    g.node("FastVMTTestInspect", "out_motion", value=motion.out(0))
    return g


def masked_graph(model, **kw):
    return masked_builder(model, **kw).finalize()


@pytest.fixture(scope="module")
def tiny_vae22(comfy):
    return comfy.tiny_vae22()


@pytest.mark.parametrize("layout", ["ti2v", "t2v_noise_mask"])
def test_held_latent_entries_stay_fixed_and_are_seen_as_in_sampling(run_graph, models, tiny_vae22, records,
                                                                     layout):
    ti2v = layout == "ti2v"
    model = models["ti2v" if ti2v else "t2v"]
    guided = run_graph(masked_graph(model, ti2v=ti2v, vae=tiny_vae22)).raise_for_error()
    calls = list(records)
    records.clear()
    plain = run_graph(masked_graph(model, ti2v=ti2v, vae=tiny_vae22, guided=False), keep_cache=True).raise_for_error()
    x_g, x_p = samples(guided), samples(plain)
    # The held first frame of the sampler's latent is exactly plain sampling's; the rest was guided.
    assert torch.equal(x_g[:, :, :1], x_p[:, :, :1])
    assert not torch.allclose(x_g[:, :, 1:], x_p[:, :, 1:])

    # The model sees held entries in guidance passes as in the sampling step at the same sigma.
    sampling_step = [c for c in calls if not c["grad"]][-1]   # the one sampling call of this 1-step run
    gradient = [c for c in calls if c["grad"]]
    assert gradient
    for c in gradient:
        assert torch.equal(c["sigma"], sampling_step["sigma"])
        assert torch.equal(c["x"][:, :, :1], sampling_step["x"][:, :, :1])
    motion = guided.output("motion", 0)
    reference = [c for c in calls if not c["grad"]][:-1]
    assert reference
    if ti2v:
        assert motion.image is not None and motion.image.kind == "first_frame"
        import comfy.latent_formats
        ref_first = comfy.latent_formats.Wan22().process_in(motion.latent)[:, :, :1]
        for c in reference:  # the reference's own first frame, clean, with timestep 0 there (mask 0)
            assert _same(c["x"][:, :, :1], ref_first)
            assert c["denoise_mask"] is not None
            assert torch.equal(c["denoise_mask"][:, :, 0], torch.zeros_like(c["denoise_mask"][:, :, 0]))
            assert torch.equal(c["denoise_mask"][:, :, 1:], torch.ones_like(c["denoise_mask"][:, :, 1:]))
        for c in gradient + [sampling_step]:  # the start image, clean
            assert c["denoise_mask"] is not None
    else:
        assert motion.image is None  # a T2V model: the reference needs no image conditioning


def test_ti2v_zero_lr_equals_plain(run_graph, models, tiny_vae22):
    guided = run_graph(masked_graph(models["ti2v"], ti2v=True, vae=tiny_vae22, settings=ZERO_LR)).raise_for_error()
    plain = run_graph(masked_graph(models["ti2v"], ti2v=True, vae=tiny_vae22, guided=False),
                      keep_cache=True).raise_for_error()
    assert torch.equal(samples(guided), samples(plain))


# ---- bad input: named errors before sampling ---------------------------------------------

def _error(run_graph, graph) -> str:
    r = run_graph(graph)
    assert r.exception_message is not None, "expected an error"
    return r.exception_message


def test_t2v_motion_with_an_i2v_model_is_refused(run_graph, models, tiny_vae, records):
    g = concat_builder(models["wan22_i2v"], tiny_vae, clip=False)
    # A motion extracted with a text-to-video model (same 16 channels, same latent size).
    t2v = g.node("UNETLoader", "t2v", unet_name=models["t2v"], weight_dtype="default")
    g.lookup_node("motion").set_input("model", t2v.out(0))
    msg = _error(run_graph, g.finalize())
    assert "motion" in msg and "image-to-video" in msg and "Re-extract" in msg
    assert not records  # refused before any model call


def test_missing_start_image_is_refused(run_graph, models, tiny_vae, records):
    msg = _error(run_graph, concat_graph(models["wan22_i2v"], tiny_vae, clip=False, start=False))
    assert "positive" in msg and "start_image" in msg and "WanImageToVideo" in msg
    assert not records


def test_first_and_last_frame_conditioning_is_refused(run_graph, models, tiny_vae, records):
    """WanFirstLastFrameToVideo also holds the last frame; the reference pass would get its
    first frame only, so the run is refused by name before any model call."""
    g = concat_builder(models["wan22_i2v"], tiny_vae, clip=False)
    i2v = g.lookup_node("i2v")
    end = g.node("FastVMTTestImage", "end", seed=13, frames=1, height=SIZE, width=SIZE)
    replace_node(g, "i2v", "WanFirstLastFrameToVideo", **{k: v for k, v in i2v.inputs.items()},
                 end_image=end.out(0))
    msg = _error(run_graph, g.finalize())
    assert "positive" in msg and "last frame" in msg and "WanFirstLastFrameToVideo" in msg
    assert "WanImageToVideo" in msg
    assert not records


def test_wan21_i2v_extraction_needs_clip_vision(run_graph, models, tiny_vae):
    msg = _error(run_graph, concat_graph(models["wan21_i2v"], tiny_vae, clip=True, extract_clip=False))
    assert msg.startswith("clip_vision:") and "clip_vision_h.safetensors" in msg


def test_i2v_extraction_needs_frames_and_vae(run_graph, models, tiny_vae):
    g = concat_builder(models["wan22_i2v"], tiny_vae, clip=False)
    ref_latent = g.node("FastVMTTestLatent", "ref_latent", seed=3, channels=16, frames=2, height=8, width=8)
    motion = g.lookup_node("motion")
    motion.set_input("images", None)
    motion.set_input("vae", None)
    motion.set_input("latent", ref_latent.out(0))
    msg = _error(run_graph, g.finalize())
    assert msg.startswith("images / vae:") and "instead of an encoded latent" in msg


def test_reference_of_another_size_is_refused(run_graph, models, tiny_vae, records):
    g = concat_builder(models["wan22_i2v"], tiny_vae, clip=False)
    g.lookup_node("motion").set_input("width", 96)
    msg = _error(run_graph, g.finalize())
    assert "reference latent is 2 frames x 8x12" in msg and "latent being sampled is 2 frames x 8x8" in msg
    assert not records


def test_ti2v_generation_with_a_motion_lacking_image_conditioning_is_refused(run_graph, comfy, models, tiny_vae22,
                                                                             records):
    import comfy_host
    motion_mod = comfy_host.pack_module("nodes.motion")
    r = run_graph(masked_graph(models["ti2v"], ti2v=True, vae=tiny_vae22, guided=False)).raise_for_error()
    motion = r.output("motion", 0)
    old = motion_mod.MotionReference(latent=motion.latent, settings=motion.settings, conditioning=None,
                                     geometry=motion.geometry, source="no image conditioning")
    path = comfy.input_dir / "fastvmt_ti2v_without_image.safetensors"
    path.unlink(missing_ok=True)
    motion_mod.write_motion_file(old, str(path))
    records.clear()
    g = masked_builder(models["ti2v"], ti2v=True, vae=tiny_vae22)
    replace_node(g, "motion", "FastVMTLoadMotion", motion_file=path.name)
    r = run_graph(g.finalize(), keep_cache=True)
    msg = r.exception_message
    assert msg is not None
    assert "TI2V" in msg and "Wan22ImageToVideoLatent" in msg and "Re-extract" in msg
    assert not [c for c in records if c["grad"]]


# ---- context windows (WAN Context Windows (Manual)) -------------------------------------

LONG = 17   # video frames: 5 latent frames, three windows of 3 overlapping by 2
WINDOWS = {"context_length": 9, "context_overlap": 5, "context_schedule": "standard_static", "context_stride": 1,
           "closed_loop": False, "fuse_method": "pyramid"}


def _long_with_windows(g, latent_node, model_node):
    """``g`` at LONG frames, WAN Context Windows (Manual) on the model of ``model_node``."""
    g.lookup_node(latent_node).set_input("length", LONG)
    g.lookup_node("ref_frames").set_input("frames", LONG)
    g.lookup_node("motion").set_input("length", LONG)
    windows = g.node("WanContextWindowsManual", "windows", model=g.lookup_node("rec").out(0), **WINDOWS)
    g.lookup_node(model_node).set_input("model", windows.out(0))
    return g


def test_i2v_with_context_windows_is_refused_where_comfyui_leaves_the_start_image_whole(run_graph, models,
                                                                                         tiny_vae):
    g = _long_with_windows(concat_builder(models["wan22_i2v"], tiny_vae, clip=False), "i2v", "sample")
    message = _error(run_graph, g.finalize())
    assert "WAN Context Windows (Manual)" in message and "c_concat" in message and "without context windows" in message
    # The reason: ComfyUI's own windowed sampling of this conditioning fails (when a ComfyUI
    # cuts it, this fails and the refusal should go).
    plain = _long_with_windows(concat_builder(models["wan22_i2v"], tiny_vae, clip=False), "i2v", "sample")
    replace_node(plain, "sample", "KSampler", **{k: v for k, v in plain.lookup_node("sample").inputs.items()
                                                 if k not in ("motion", "settings")})
    assert "Sizes of tensors must match" in _error(run_graph, plain.finalize())


def test_ti2v_with_context_windows_is_refused_by_name(run_graph, models, tiny_vae22):
    g = _long_with_windows(masked_builder(models["ti2v"], ti2v=True, vae=tiny_vae22), "latent", "apply")
    message = _error(run_graph, g.finalize())
    assert "denoise_mask" in message and "other frames' noise levels" in message
