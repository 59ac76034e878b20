"""The shipped example workflows (example_workflows/).

* The committed files are exactly what ``example_workflows/build.py`` writes (UI and API
  format come from one description).
* Every UI workflow fits a real ComfyUI with the pack loaded (its /object_info, from the
  server's own route handler): node types exist, every widget has a value (none left for
  the frontend to fill in), valid for its input and in /object_info's order, links join
  matching types, required inputs are connected.
  That the frontend converts each UI file into the shipped API file is tested in the real
  frontend (test_browser_workflows.py).
* The node schemas build.py generates the workflows from (schemas/node_schemas.json) are
  the live ones: a node that gains, loses or reorders an input fails here.
* Every template has a title, a one-line description and a thumbnail (``<name>.jpg``,
  small, rendered from the workflow as it is now).
* Every API workflow passes ComfyUI's own prompt validator.

The checks (tests/helpers/workflows.py) are plain functions taking an /object_info lookup,
so ``test_runner_host.py`` runs them again against a live server's ``/object_info``.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.helpers.workflows import (BUILD, REPO, WORKFLOW_DIR, api_file_for, check_ui_workflow, load_builder,
                                     ui_files)

# ---------------------------------------------------------------------------
# tests without ComfyUI
# ---------------------------------------------------------------------------

def test_builder_check_passes():
    """The committed files equal what the builder writes (UI and API from one source)."""
    r = subprocess.run([sys.executable, str(BUILD), "--check"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_builder_check_detects_drift(tmp_path, monkeypatch):
    b = load_builder()
    files = b.render_all()
    (tmp_path / "api").mkdir()
    for rel, text in files.items():
        (tmp_path / rel).write_text(text, encoding="utf-8")
    monkeypatch.setattr(b, "HERE", tmp_path)
    monkeypatch.setattr(b, "API_DIR", tmp_path / "api")
    assert b.main(["--check"]) == 0
    first_api = sorted(r for r in files if r.startswith("api/"))[0]
    (tmp_path / first_api).write_text(files[first_api].replace('"steps": 50', '"steps": 49'), encoding="utf-8")
    (tmp_path / "stray.json").write_text("{}", encoding="utf-8")
    assert b.main(["--check"]) == 1


def test_widget_values_come_from_the_node_schemas(monkeypatch):
    """A widget the schema gains appears in every workflow with its default: the builder
    takes widgets, their order and defaults from the schema snapshot, not from a list of
    its own."""
    b = load_builder()
    spec = b.SPECS["FastVMTStepSkipSettings"]
    knob = b.Input("new_knob", "FLOAT", optional=True, widget=True, has_default=True, default=0.5)
    monkeypatch.setitem(b.SPECS, "FastVMTStepSkipSettings",
                        b.Spec(spec.type, spec.display, spec.inputs + (knob,), spec.outputs))
    g = b.wf_guidance_sampler()
    ui, api = b.to_ui(g), b.to_api(g)
    (node,) = [n for n in ui["nodes"] if n["type"] == "FastVMTStepSkipSettings"]
    assert len(node["widgets_values"]) == len(spec.widgets) + 1 and node["widgets_values"][-1] == 0.5
    assert api[str(node["id"])]["inputs"]["new_knob"] == 0.5


def test_templates_have_a_title_a_description_and_a_fresh_thumbnail():
    """What the template browser shows: <name>.jpg (the frontend's only per-template
    picture); its title and description are drawn into it from extra.fastvmt. The JPEG's
    comment names the workflow state it was rendered from (render_thumbnails.py)."""
    image = pytest.importorskip("PIL.Image")
    b = load_builder()
    spec = importlib.util.spec_from_file_location("fastvmt_render_thumbnails", WORKFLOW_DIR / "render_thumbnails.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    stale = []
    for p in ui_files():
        ui = json.loads(p.read_text(encoding="utf-8"))
        meta = ui["extra"]["fastvmt"]
        assert 0 < len(meta["title"]) <= 48 and "\n" not in meta["title"], meta
        assert 0 < len(meta["description"]) <= 120 and "\n" not in meta["description"], meta
        thumb = p.with_suffix(".jpg")
        assert thumb.is_file(), f"{thumb.name} is missing: run python example_workflows/render_thumbnails.py"
        assert thumb.stat().st_size < render.THUMBNAIL_MAX_BYTES, thumb
        with image.open(thumb) as im:
            assert im.format == "JPEG" and im.size == (render.THUMBNAIL_SIZE, render.THUMBNAIL_SIZE)
        if render.thumbnail_key_of(thumb) != b.thumbnail_key(ui):
            stale.append(p.stem)
    assert not stale, f"thumbnails older than their workflows: {stale} (run: python " \
                      f"example_workflows/render_thumbnails.py {' '.join(stale)})"


def test_expected_workflows_shipped():
    names = {p.stem for p in ui_files()}
    assert names == {"fastvmt_wan21_t2v_motion_transfer", "fastvmt_wan21_t2v_apply_motion_ksampler",
                     "fastvmt_wan21_t2v_extract_and_save_motion", "fastvmt_wan21_t2v_reuse_saved_motion",
                     "fastvmt_wan21_t2v_uni_pc", "fastvmt_wan22_t2v_14b_two_experts",
                     "fastvmt_wan22_i2v_14b_two_experts", "fastvmt_wan22_ti2v_5b", "fastvmt_wan21_i2v_480p",
                     "fastvmt_selftest_wan21_t2v", "fastvmt_wan21_t2v_camera_motion_only",
                     "fastvmt_wan21_t2v_long_video_161_frames"}
    for p in ui_files():
        assert api_file_for(p).is_file(), p
        ui = json.loads(p.read_text(encoding="utf-8"))
        assert ui["version"] == 0.4 and ui["groups"] and any(n["type"] == "Note" for n in ui["nodes"])


def test_main_workflow_contents():
    """The settings the issue asks for in the main workflow."""
    api = json.loads((WORKFLOW_DIR / "api" / "fastvmt_wan21_t2v_motion_transfer.api.json").read_text("utf-8"))
    by_type = {}
    for n in api.values():
        by_type.setdefault(n["class_type"], []).append(n["inputs"])
    assert by_type["UNETLoader"][0]["unet_name"] == "wan2.1_t2v_1.3B_fp16.safetensors"
    assert by_type["CLIPLoader"][0] == {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan",
                                        "device": "default"}
    assert by_type["VAELoader"][0]["vae_name"] == "wan_2.1_vae.safetensors"
    ex = by_type["FastVMTExtractMotion"][0]
    assert (ex["width"], ex["height"], ex["length"], ex["motion_block"]) == (832, 480, 81, 14)
    lat = by_type["EmptyHunyuanLatentVideo"][0]
    assert (lat["width"], lat["height"], lat["length"]) == (832, 480, 81)
    assert by_type["FastVMTGuidanceSampler"][0]["steps"] == 50
    texts = sorted(i["text"] for i in by_type["CLIPTextEncode"])
    assert len(texts) == 3 and texts[0] == ""  # positive, negative and the empty reference prompt
    for t in ("LoadVideo", "GetVideoComponents", "VAEDecode", "CreateVideo", "SaveVideo", "FastVMTStepSkipSettings"):
        assert t in by_type, t


def test_long_video_workflow_samples_161_frames_in_context_windows():
    """The "long video" template: 161 frames everywhere, WAN Context Windows (Manual) between
    the loader and the Guidance Sampler with windows FastVMT can guide (ComfyUI's defaults)."""
    api = json.loads((WORKFLOW_DIR / "api" / "fastvmt_wan21_t2v_long_video_161_frames.api.json").read_text("utf-8"))
    by_type = {n["class_type"]: (nid, n["inputs"]) for nid, n in api.items()}
    windows_id, windows = by_type["WanContextWindowsManual"]
    assert (windows["context_length"], windows["context_overlap"], windows["context_schedule"]) == \
        (81, 30, "standard_static")
    assert windows["model"][0] == by_type["UNETLoader"][0]
    assert by_type["FastVMTGuidanceSampler"][1]["model"] == [windows_id, 0]
    assert by_type["FastVMTExtractMotion"][1]["length"] == by_type["EmptyHunyuanLatentVideo"][1]["length"] == 161
    # Latent frames as the node converts them: windows of 21 overlapping by 8 >= the default span.
    from fastvmt_core import FastVMTSettings
    assert (30 - 1) // 4 + 1 >= FastVMTSettings().temporal_span


def test_camera_motion_workflow_transfers_only_the_camera():
    """The "camera motion only" template is the main graph with Step-Skip Settings' transfer on
    'camera' (full strength), connected to the Guidance Sampler, and a note on when to use it."""
    api = _api("fastvmt_wan21_t2v_camera_motion_only")
    main = _api("fastvmt_wan21_t2v_motion_transfer")
    (settings_id,) = [k for k, n in api.items() if n["class_type"] == "FastVMTStepSkipSettings"]
    settings = api[settings_id]["inputs"]
    assert settings["transfer"] == "camera" and settings["motion_strength"] == 1.0
    (main_settings,) = [n["inputs"] for n in main.values() if n["class_type"] == "FastVMTStepSkipSettings"]
    assert {k: v for k, v in settings.items() if k != "transfer"} == \
        {k: v for k, v in main_settings.items() if k != "transfer"}
    (sampler,) = [n for n in api.values() if n["class_type"] == "FastVMTGuidanceSampler"]
    assert sampler["inputs"]["settings"] == [settings_id, 0]
    assert sorted(n["class_type"] for n in api.values()) == sorted(n["class_type"] for n in main.values())
    ui = json.loads((WORKFLOW_DIR / "fastvmt_wan21_t2v_camera_motion_only.json").read_text("utf-8"))
    notes = " ".join(n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "Note")
    assert "transfer' is 'camera'" in notes and "Parallax" in notes


def _api(name):
    return json.loads((WORKFLOW_DIR / "api" / f"{name}.api.json").read_text("utf-8"))


def _source(api, node_id, name):
    """The node feeding input ``name`` of node ``node_id`` (its id and class_type)."""
    ref = api[node_id]["inputs"][name]
    return ref[0], api[ref[0]]["class_type"]


def test_selftest_workflow_compares_like_with_like():
    """The self-test: the shipped clip; one prompt, seed, latent and sampler settings for the
    plain run and the two FastVMT runs (the paper's flow; the released code's, span 4 and the
    reference at the step's own sigma); each scored against the frames Extract Motion uses (as
    many as generated); the video stitched reference | plain | FastVMT | released with the
    reference first (its even width keeps the stitched width even for H.264)."""
    api = _api("fastvmt_selftest_wan21_t2v")
    ids = {}
    for k, n in api.items():
        ids.setdefault(n["class_type"], []).append(k)
    (video,), (frames,), (latent,), (settings,) = (ids[t] for t in ("LoadVideo", "ImageFromBatch",
                                                                   "EmptyHunyuanLatentVideo", "FastVMTStepSkipSettings"))
    extract, extract_released = sorted(ids["FastVMTExtractMotion"], key=lambda k: api[k]["inputs"]["temporal_span"] == 4)
    assert api[video]["inputs"]["file"] == load_builder().SELFTEST_VIDEO
    assert (WORKFLOW_DIR / "input" / api[video]["inputs"]["file"]).is_file()
    for e in (extract, extract_released):
        assert _source(api, e, "images")[0] == frames and api[frames]["inputs"]["batch_index"] == 0
        assert api[frames]["inputs"]["length"] == api[e]["inputs"]["length"] == api[latent]["inputs"]["length"]
    assert api[extract]["inputs"]["temporal_span"] == 5
    assert api[settings]["inputs"]["flow_definition"] == "released"
    assert api[settings]["inputs"]["reference_sigma_cap"] == 1.0
    (plain,) = ids["KSampler"]
    guided, released = sorted(ids["FastVMTGuidanceSampler"], key=lambda k: "settings" in api[k]["inputs"])
    same = ("model", "positive", "negative", "latent_image", "seed", "steps", "cfg", "sampler_name", "scheduler",
            "denoise")
    assert all(api[plain]["inputs"][k] == api[g]["inputs"][k] for g in (guided, released) for k in same)
    assert _source(api, guided, "motion")[0] == extract and "motion" not in api[plain]["inputs"]
    assert _source(api, released, "motion")[0] == extract_released and _source(api, released, "settings")[0] == settings
    decoded = {_source(api, d, "samples")[0]: d for d in ids["VAEDecode"]}
    scored = {_source(api, m, "generated")[0]: m for m in ids["FastVMTMotionFidelity"]}
    assert set(scored) == {decoded[plain], decoded[guided], decoded[released]}
    assert all(_source(api, m, "reference")[0] == frames for m in scored.values())
    first, second, third = ids["ImageStitch"]
    assert [_source(api, first, "image1")[0], _source(api, first, "image2")[0]] == [frames, decoded[plain]]
    assert [_source(api, second, "image1")[0], _source(api, second, "image2")[0]] == [first, decoded[guided]]
    assert [_source(api, third, "image1")[0], _source(api, third, "image2")[0]] == [second, decoded[released]]
    assert all(api[s]["inputs"]["direction"] == "right" and api[s]["inputs"]["spacing_width"] % 2 == 0
               for s in (first, second, third))
    assert _source(api, ids["CreateVideo"][0], "images")[0] == third


GENERATION_LATENTS = ("EmptyHunyuanLatentVideo", "WanImageToVideo", "Wan22ImageToVideoLatent")


@pytest.mark.parametrize("api_path", sorted((WORKFLOW_DIR / "api").glob("*.api.json")), ids=lambda p: p.stem)
def test_extract_size_equals_the_generation(api_path):
    """Extract Motion's width / height / length equal the generated latent's (one per workflow)."""
    api = json.loads(api_path.read_text("utf-8"))
    size = lambda i: (i["width"], i["height"], i["length"])  # noqa: E731
    extracts = [n["inputs"] for n in api.values() if n["class_type"] == "FastVMTExtractMotion"]
    latents = [n["inputs"] for n in api.values() if n["class_type"] in GENERATION_LATENTS]
    for ex in extracts:
        for lat in latents:
            assert size(ex) == size(lat)


I2V_EXPECTED = {
    # name: (unet names, vae, size, motion_block, latent node, sampler settings, shift, fps)
    "fastvmt_wan22_i2v_14b_two_experts": (
        ["wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"],
        "wan_2.1_vae.safetensors", (640, 640, 81), 20, "WanImageToVideo", (20, 3.5, "euler", "simple"), 8.0, 16.0),
    "fastvmt_wan22_ti2v_5b": (
        ["wan2.2_ti2v_5B_fp16.safetensors"], "wan2.2_vae.safetensors", (1280, 704, 121), 14,
        "Wan22ImageToVideoLatent", (20, 5.0, "uni_pc", "simple"), 8.0, 24.0),
    "fastvmt_wan21_i2v_480p": (
        ["wan2.1_i2v_480p_14B_fp16.safetensors"], "wan_2.1_vae.safetensors", (512, 512, 33), 20,
        "WanImageToVideo", (20, 6.0, "uni_pc", "simple"), 8.0, 16.0),
}


@pytest.mark.parametrize("name", sorted(I2V_EXPECTED))
def test_i2v_workflow_contents(name):
    """The image-to-video workflows: ComfyUI's template settings, the start image into the
    generation, and the reference pass conditioned like it (images + vae, and the CLIP vision
    model where the model has a CLIP-vision image branch)."""
    unets, vae_name, size, block, latent_type, (steps, cfg, sampler, scheduler), shift, fps = I2V_EXPECTED[name]
    api = _api(name)
    ids = {}
    for k, n in api.items():
        ids.setdefault(n["class_type"], []).append(k)
    one = lambda t: api[ids[t][0]]["inputs"]  # noqa: E731
    assert [api[k]["inputs"]["unet_name"] for k in ids["UNETLoader"]] == unets
    assert [api[k]["inputs"]["shift"] for k in ids["ModelSamplingSD3"]] == [shift] * len(unets)
    assert one("VAELoader")["vae_name"] == vae_name
    (ex_id,) = ids["FastVMTExtractMotion"]
    ex = api[ex_id]["inputs"]
    assert (ex["width"], ex["height"], ex["length"], ex["motion_block"]) == (*size, block)
    assert _source(api, ex_id, "images")[1] == "GetVideoComponents"
    vae_id = ids["VAELoader"][0]
    assert _source(api, ex_id, "vae")[0] == vae_id
    # the motion is extracted with the (first, high-noise) shifted model
    model_id, model_type = _source(api, ex_id, "model")
    assert model_type == "ModelSamplingSD3" and _source(api, model_id, "model")[0] == ids["UNETLoader"][0]
    (lat_id,) = ids[latent_type]
    image_id, image_type = _source(api, lat_id, "start_image")
    assert image_type == "LoadImage" and _source(api, lat_id, "vae")[0] == vae_id
    if "CLIPVisionLoader" in ids:
        (vision_id,) = ids["CLIPVisionLoader"]
        assert api[vision_id]["inputs"]["clip_name"] == "clip_vision_h.safetensors"
        (enc_id,) = ids["CLIPVisionEncode"]
        assert api[enc_id]["inputs"]["crop"] == "none"
        assert _source(api, enc_id, "image")[0] == image_id and _source(api, enc_id, "clip_vision")[0] == vision_id
        assert _source(api, lat_id, "clip_vision_output")[0] == enc_id
        assert _source(api, ex_id, "clip_vision")[0] == vision_id
    else:
        assert "clip_vision" not in ex and "CLIPVisionEncode" not in ids
    samplers = [api[k]["inputs"] for k in ids.get("KSamplerAdvanced", []) + ids.get("FastVMTGuidanceSampler", [])]
    assert samplers and all((s["steps"], s["cfg"], s["sampler_name"], s["scheduler"]) == (steps, cfg, sampler, scheduler)
                            for s in samplers)
    if "KSamplerAdvanced" in ids:
        high, low = (api[k]["inputs"] for k in ids["KSamplerAdvanced"])
        assert (high["start_at_step"], high["end_at_step"], low["start_at_step"]) == (0, 10, 10)
        assert len(ids["FastVMTApplyMotion"]) == 2
    assert one("CreateVideo")["fps"] == fps


# ---------------------------------------------------------------------------
# tests inside real ComfyUI (in-process, pack loaded like a custom node)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def object_info(comfy, fastvmt_pack):
    return comfy.object_info()


def test_node_schema_snapshot_is_the_live_one(object_info):
    """build.py generates every widget value from schemas/node_schemas.json; it must be
    what this ComfyUI with the pack answers (after changing a node: run
    python example_workflows/build.py --update-schemas, then build.py)."""
    b = load_builder()
    saved = json.loads(b.SCHEMA_FILE.read_text(encoding="utf-8"))
    live = b.schema_snapshot(object_info)
    changed = sorted(t for t in set(saved) | set(live) if saved.get(t) != live.get(t))
    assert not changed, f"node schemas changed: {changed} (run: python example_workflows/build.py --update-schemas)"


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_ui_workflow_fits_real_comfyui(ui_path, object_info):
    b = load_builder()
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    problems = check_ui_workflow(ui, object_info, known_model_files=set(b.MODEL_FILES))
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def stand_in_user_files(comfy, tmp_path_factory):
    """Files under the exact names the workflows use; the validator only checks names."""
    b = load_builder()
    d = tmp_path_factory.mktemp("stand_in_files")
    for name, (folder, _) in b.MODEL_FILES.items():
        p = d / name
        p.write_bytes(b"")
        comfy.add_model_file(folder, p, name)
    (comfy.input_dir / b.REFERENCE_VIDEO).write_bytes(b"")
    (comfy.input_dir / b.SELFTEST_VIDEO).write_bytes(b"")
    (comfy.input_dir / b.START_IMAGE).write_bytes(b"")
    # the reuse workflow loads what the save workflow writes: "<name> [output]" is under output/
    name = b.SAVED_MOTION.removesuffix(" [output]")
    motion = (comfy.output_dir if name != b.SAVED_MOTION else comfy.input_dir) / name
    motion.parent.mkdir(parents=True, exist_ok=True)
    motion.write_bytes(b"")


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_api_workflow_passes_comfyui_validation(ui_path, comfy, fastvmt_pack, stand_in_user_files):
    api = json.loads(api_file_for(ui_path).read_text(encoding="utf-8"))
    res = comfy.validate_graph(api)
    assert res.valid, res.describe()


def test_checks_catch_broken_workflows(object_info):
    """The checker is not vacuous: a swapped widget order, a wrong link type, an unknown
    node type and missing widget values are all reported."""
    ui = json.loads((WORKFLOW_DIR / "fastvmt_wan21_t2v_motion_transfer.json").read_text(encoding="utf-8"))
    sampler = next(n for n in ui["nodes"] if n["type"] == "FastVMTGuidanceSampler")
    wv = sampler["widgets_values"]
    wv[4], wv[5] = wv[5], wv[4]  # sampler_name <-> scheduler
    ui["links"][0][5] = "LATENT"
    ui["nodes"].append({"id": 999, "type": "NoSuchNode", "inputs": [], "outputs": [], "widgets_values": []})
    settings = next(n for n in ui["nodes"] if n["type"] == "FastVMTStepSkipSettings")
    full = len(settings["widgets_values"])
    settings["widgets_values"] = settings["widgets_values"][:-3]  # a workflow older than the node's inputs
    problems = "\n".join(check_ui_workflow(ui, object_info))
    assert "sampler_name='simple'" in problems and "scheduler='euler'" in problems
    assert "link 1:" in problems and "NoSuchNode" in problems
    assert f"node {settings['id']} FastVMTStepSkipSettings: {full - 3} widget values, /object_info has {full}" in problems
