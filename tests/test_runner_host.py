"""The headless runner (the package fastvmt_runner/, run as ``python fastvmt_runner.py``) against a
real ComfyUI server (``main.py --cpu`` in a subprocess).

The server runs with ``--base-directory <tmp>``: in ComfyUI 0.3.64 that directory alone
holds models/, input/, output/, user/ *and* custom_nodes/ (folder_paths.py), so the
checkout's own custom_nodes are not loaded. The pack (this repository) and the test node
pack (comfy_host/stand_in_nodes/) are symlinked into ``<tmp>/custom_nodes/``.

Model files are tiny random-weight stand-ins saved under the exact names the shipped
workflows use: a 16-block dim-256 Wan 2.1 T2V as ``wan2.1_t2v_1.3B_fp16.safetensors``
and the random-weight Wan 2.1 VAE as ``wan_2.1_vae.safetensors``. No stand-in can exist
for the UMT5-XXL text encoder (its configuration is fixed at about 5.7B parameters), so
the headless run swaps the workflow's ``CLIPTextEncode`` nodes for the test node
``FastVMTTestConditioning`` (seeded random conditioning, same ``text`` input) and drops
``CLIPLoader`` (``stand_in_text_encoders``). That transform lives here, not in the runner:
users always have the real text encoder.

The server is started once per module and always stopped (terminate, then kill).
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import comfy_host
import fastvmt_runner
from bench import soak_setup
from fastvmt_runner import selftest
from tests.helpers.workflows import WORKFLOW_DIR, check_ui_workflow, load_builder, ui_files

REPO = comfy_host.REPO_ROOT
RUNNER = REPO / "fastvmt_runner.py"
MAIN_API = WORKFLOW_DIR / "api" / "fastvmt_wan21_t2v_motion_transfer.api.json"
TINY = ["--width", "64", "--height", "48", "--frames", "9", "--steps", "4"]
PACK_DIR_NAME = comfy_host.PACK_DIR_NAME



stand_in_text_encoders = comfy_host.stand_in_text_encoders


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if comfy_host.find_comfyui() is None:
        msg = "ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI"
        if os.environ.get("FASTVMT_REQUIRE_COMFYUI", "").strip().lower() in ("1", "true", "yes", "on"):
            pytest.fail(msg)
        pytest.skip(msg)
    base = tmp_path_factory.mktemp("comfy_server")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO, target_is_directory=True)
    (base / "custom_nodes" / "fastvmt_test_nodes").symlink_to(comfy_host.TEST_NODES_DIR, target_is_directory=True)
    models = base / "models"
    comfy_host.make_tiny_wan(models / "diffusion_models" / "wan2.1_t2v_1.3B_fp16.safetensors",
                             dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512)
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "wan_2.1_vae.safetensors").symlink_to(comfy_host.cached_tiny_wan_vae())
    srv = None
    try:
        srv = comfy_host.start_server(base)
        yield srv
    finally:
        if srv is not None:
            comfy_host.stop_server(srv)


def run_runner(args, *, subprocess_run=False, timeout=300):
    """(exit code, stdout, stderr) of the runner, in-process or as ``python fastvmt_runner.py``."""
    if subprocess_run:
        r = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=timeout,
                           cwd=REPO)
        return r.returncode, r.stdout, r.stderr
    out, err = io.StringIO(), io.StringIO()
    code = fastvmt_runner.run(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _tiny_workflow(tmp_path, src=MAIN_API) -> Path:
    prompt = stand_in_text_encoders(json.loads(src.read_text(encoding="utf-8")))
    path = tmp_path / src.name
    path.write_text(json.dumps(prompt), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def source_video(tmp_path_factory) -> Path:
    return soak_setup.write_clip(tmp_path_factory.mktemp("clip") / "source.mp4")


def _read_video(path: Path):
    import av
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = [f for f in c.decode(stream)]
    return len(frames), frames[0].width, frames[0].height


# ---------------------------------------------------------------------------


def test_headless_run_writes_the_video(server, tmp_path, source_video):
    """The main workflow end to end: upload, overrides, progress, history, download."""
    wf = _tiny_workflow(tmp_path)
    out_dir = tmp_path / "out"
    t0 = time.monotonic()
    code, out, err = run_runner([str(wf), "--server", server.address, "--video", str(source_video),
                                 "--prompt", "a red fox running through snow", "--seed", "3", *TINY,
                                 "--output-prefix", "video/headless", "--out-dir", str(out_dir)],
                                subprocess_run=True)
    assert code == 0, f"runner failed ({code}):\n{err}\n--- server log ---\n{server.log_tail()}"
    # the sampler's tqdm bar reached its total (guidance inner steps included)
    assert "uploaded" in err and re.search(r"Guidance Sampler: 100%\|.*\| (\d+)/\1", err) and "done in" in err, err
    files = [Path(line) for line in out.split()]
    assert len(files) == 1 and files[0].suffix == ".mp4" and files[0].parent == out_dir, out
    assert _read_video(files[0]) == (9, 64, 48)
    # the server really used the overrides and the stand-in prompt text
    assert (server.base / "input" / "source.mp4").is_file()
    assert (server.base / "output" / "video" / files[0].name).is_file()
    print(f"headless run: {time.monotonic() - t0:.1f}s")


def test_long_video_workflow_with_frames_runs_in_context_windows(server, tmp_path):
    """The "long video (161 frames)" template, its lengths set by --frames: 97 frames (25
    latent) in windows of 81 (21) overlapping by 30 (8), guided window by window."""
    long_api = WORKFLOW_DIR / "api" / "fastvmt_wan21_t2v_long_video_161_frames.api.json"
    wf = _tiny_workflow(tmp_path, long_api)
    clip = soak_setup.write_clip(tmp_path / "long.mp4", frames=97)
    code, out, err = run_runner([str(wf), "--server", server.address, "--video", str(clip), "--width", "64",
                                 "--height", "48", "--frames", "97", "--steps", "4", "--out-dir",
                                 str(tmp_path / "out")], subprocess_run=True, timeout=600)
    assert code == 0, f"runner failed ({code}):\n{err}\n--- server log ---\n{server.log_tail()}"
    assert "length = 97 (2 nodes)" in err, err
    assert _read_video(Path(out.split()[0])) == (97, 64, 48)
    assert "guidance ran per window, 2 windows of 21 latent frames" in server.log_tail(), server.log_tail()
    # The clip of the template's own length is needed: a shorter one is refused before sampling.
    short = soak_setup.write_clip(tmp_path / "short.mp4", frames=33)
    code, _, err = run_runner([str(wf), "--server", server.address, "--video", str(short), "--width", "64",
                               "--height", "48", "--frames", "97", "--steps", "4", "--out-dir",
                               str(tmp_path / "out")], subprocess_run=True, timeout=600)
    assert code != 0 and "neither looped nor stretched" in err and "at least 97 frames" in err, err


def test_motion_library_extract_save_then_reuse_with_three_prompts(server, tmp_path, source_video):
    """Extract + Save Motion once, then Load Motion (uploaded with --motion) feeding three
    samplers with different prompts."""
    code, out, err = run_runner([str(_tiny_workflow(tmp_path, WORKFLOW_DIR / "api" /
                                                    "fastvmt_wan21_t2v_extract_and_save_motion.api.json")),
                                 "--server", server.address, "--video", str(source_video),
                                 "--width", "64", "--height", "48", "--frames", "9", "--out-dir", str(tmp_path / "m")])
    assert code == 0, f"{err}\n--- server log ---\n{server.log_tail()}"
    motion = [Path(p) for p in out.split()]
    assert len(motion) == 1 and motion[0].suffix == ".safetensors", out
    code, out, err = run_runner([str(_tiny_workflow(tmp_path, WORKFLOW_DIR / "api" /
                                                    "fastvmt_wan21_t2v_reuse_saved_motion.api.json")),
                                 "--server", server.address, "--motion", str(motion[0]),
                                 "--prompt", "a fox", "--prompt", "an astronaut", "--prompt", "a dog",
                                 "--steps", "4", "--width", "64", "--height", "48", "--frames", "9",
                                 "--output-prefix", "video/lib", "--out-dir", str(tmp_path / "v")])
    assert code == 0, f"{err}\n--- server log ---\n{server.log_tail()}"
    videos = sorted(Path(p) for p in out.split())
    assert [v.name for v in videos] == ["lib_a_00001_.mp4", "lib_b_00001_.mp4", "lib_c_00001_.mp4"], out
    assert all(_read_video(v) == (9, 64, 48) for v in videos)


def test_live_object_info_and_templates(server):
    """The UI workflows fit the live server's /object_info; ComfyUI lists each shipped
    workflow once as a template of the pack (and serves it)."""
    info = server.get_json("/object_info")
    b = load_builder()
    for p in ui_files():
        problems = check_ui_workflow(json.loads(p.read_text("utf-8")), info, known_model_files=set(b.MODEL_FILES))
        assert not problems, f"{p.name}:\n" + "\n".join(problems)
    templates = server.get_json("/workflow_templates")
    assert sorted(templates.get(PACK_DIR_NAME, [])) == sorted(p.stem for p in ui_files())
    served = server.get_json(f"/api/workflow_templates/{PACK_DIR_NAME}/{ui_files()[0].name}")
    assert served == json.loads(ui_files()[0].read_text("utf-8"))


def test_missing_model_file_names_file_and_folder(server, tmp_path):
    """The shipped workflow as is: the UMT5 text encoder is not on this server."""
    code, out, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--server", server.address,
                                 "--out-dir", str(tmp_path)])
    assert code == fastvmt_runner.EXIT_MISSING, err
    assert "umt5_xxl_fp8_e4m3fn_scaled.safetensors" in err and "models/text_encoders/" in err, err
    assert "wan2.1_t2v_1.3B_fp16" not in err  # present: not reported
    code, _, err = run_runner([str(_tiny_workflow(tmp_path)), "--server", server.address,
                               "--set", "1.unet_name=wan2.1_t2v_14B_fp16.safetensors"])
    assert code == fastvmt_runner.EXIT_MISSING
    assert "wan2.1_t2v_14B_fp16.safetensors" in err and "models/diffusion_models/" in err, err


def test_missing_input_video(server, tmp_path):
    """A bare name is a file in ComfyUI's input folder: checked against the server's list."""
    code, _, err = run_runner([str(_tiny_workflow(tmp_path)), "--server", server.address,
                               "--video", "no_such_clip.mp4"])
    assert code == fastvmt_runner.EXIT_MISSING
    assert "no_such_clip.mp4" in err and "input folder" in err and "pass a local file with --video" in err, err


def test_a_local_path_that_does_not_exist_is_no_such_file(server, tmp_path, monkeypatch):
    """Written as a path (./, ~, absolute, or with a folder), a value means a local file: when
    there is none the runner says so, naming the flag, instead of blaming the input folder.
    A relative path with a folder that the server's input folder has is that file."""
    monkeypatch.chdir(tmp_path)
    wf, reuse = _tiny_workflow(tmp_path), _tiny_workflow(tmp_path, WORKFLOW_DIR / "api" /
                                                         "fastvmt_wan21_t2v_reuse_saved_motion.api.json")
    for flag, workflow, value in (("--video", wf, "./clip.mp4"), ("--video", wf, str(tmp_path / "gone.mp4")),
                                  ("--video", wf, "~/fastvmt_no_such_dir/clip.mp4"),
                                  ("--motion", reuse, "missing/motion.safetensors")):
        code, _, err = run_runner([str(workflow), "--server", server.address, flag, value])
        assert code == fastvmt_runner.EXIT_MISSING, err
        assert f"error: {flag}: no such file: {value}" in err and "pass a local file" not in err, err
        assert "uploaded" not in err
    listed = server.base / "input" / "fastvmt" / "t_listed_motion.safetensors"
    listed.parent.mkdir(parents=True, exist_ok=True)
    listed.write_bytes(b"not read: the prompt is refused before it runs")
    # passes every check of the runner; ComfyUI then refuses steps 0 (so nothing runs)
    code, _, err = run_runner([str(reuse), "--server", server.address, "--motion", "fastvmt/t_listed_motion.safetensors",
                               "--steps", "0"])
    assert code == fastvmt_runner.EXIT_REJECTED and "steps" in err, err
    assert "motion file: fastvmt/t_listed_motion.safetensors" in err


def test_models_are_checked_before_the_reference_is_uploaded(server, tmp_path, source_video):
    clip = tmp_path / "t_never_uploaded.mp4"
    clip.write_bytes(source_video.read_bytes())
    code, _, err = run_runner([str(_tiny_workflow(tmp_path)), "--server", server.address, "--video", str(clip),
                               "--set", "1.unet_name=wan2.1_t2v_14B_fp16.safetensors"])
    assert code == fastvmt_runner.EXIT_MISSING and "wan2.1_t2v_14B_fp16.safetensors" in err, err
    assert "uploaded" not in err and not (server.base / "input" / clip.name).exists()


def test_rejected_prompt_prints_node_errors(server, tmp_path, source_video):
    code, _, err = run_runner([str(_tiny_workflow(tmp_path)), "--server", server.address,
                               "--video", str(source_video), "--set", "Extract Motion (Sliding Window).motion_block=500"])
    assert code == fastvmt_runner.EXIT_REJECTED, err
    assert "rejected" in err and "FastVMTExtractMotion" in err and "motion_block" in err, err


def test_execution_error_is_reported(server, tmp_path, source_video):
    """A block index the (16-block) model does not have fails inside the node."""
    code, _, err = run_runner([str(_tiny_workflow(tmp_path)), "--server", server.address,
                               "--video", str(source_video), *TINY, "--set",
                               "Extract Motion (Sliding Window).motion_block=40"])
    assert code == fastvmt_runner.EXIT_FAILED, err
    assert "FastVMTExtractMotion" in err and "40" in err, err


def test_server_down(tmp_path):
    port = comfy_host.free_port()  # nothing listens there
    code, out, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--server", f"127.0.0.1:{port}"],
                                subprocess_run=True)
    assert code == fastvmt_runner.EXIT_SERVER == 3
    assert f"cannot reach ComfyUI at http://127.0.0.1:{port}" in err and "Traceback" not in err, err


def test_usage_errors_need_no_server(tmp_path):
    code, _, err = run_runner(["no_such_workflow"])
    assert code == 2 and "not a shipped example" in err
    code, _, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--frames", "10"])
    assert code == 2 and "4k+1" in err
    ui = WORKFLOW_DIR / "fastvmt_wan21_t2v_motion_transfer.json"
    code, _, err = run_runner([str(ui), "--dry-run"])
    assert code == 2 and "not an API-format prompt" in err
    code, out, _ = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--dry-run", "--prompt", "a cat", *TINY])
    prompt = json.loads(out)
    assert code == 0 and sum(n["inputs"].get("text") == "a cat" for n in prompt.values()) == 1
    assert sorted(n["inputs"]["width"] for n in prompt.values() if "width" in n["inputs"]) == [64, 64]
    # image-to-video: --image sets the start image by role, and the size reaches WanImageToVideo too
    code, out, _ = run_runner(["fastvmt_wan21_i2v_480p", "--dry-run", "--image", "cat.png", *TINY])
    prompt = json.loads(out)
    assert code == 0 and [n["inputs"]["image"] for n in prompt.values() if n["class_type"] == "LoadImage"] == \
        ["cat.png"]
    assert {n["class_type"]: n["inputs"]["width"] for n in prompt.values() if "width" in n["inputs"]} == \
        {"FastVMTExtractMotion": 64, "WanImageToVideo": 64}
    code, _, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--dry-run", "--image", "cat.png"])
    assert code == 2 and "--image: no node in this workflow takes it" in err


def test_dry_run_checks_that_the_local_files_exist(tmp_path, source_video):
    code, _, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--dry-run", "--video", str(tmp_path / "gone.mp4")])
    assert code == fastvmt_runner.EXIT_MISSING and f"--video: no such file: {tmp_path / 'gone.mp4'}" in err, err
    code, _, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--dry-run", "--video", str(tmp_path)])
    assert code == fastvmt_runner.EXIT_MISSING and "(it is a folder)" in err, err
    code, out, err = run_runner(["fastvmt_wan21_t2v_motion_transfer", "--dry-run", "--video", str(source_video)])
    assert code == 0 and "uploaded" not in err
    assert [n["inputs"]["file"] for n in json.loads(out).values() if n["class_type"] == "LoadVideo"] == \
        [str(source_video)]
    # a relative path with a folder may name a file in the server's input folder: said, not refused
    code, out, err = run_runner(["fastvmt_wan21_t2v_reuse_saved_motion", "--dry-run", "--motion",
                                 "fastvmt/motion_00001_.safetensors"])
    assert code == 0 and "no such local file" in err and "not checked" in err, err


def test_the_runner_runs_by_path_from_anywhere_and_as_a_module(tmp_path):
    """``python /path/to/pack/fastvmt_runner.py`` from another folder, isolated (-I: neither
    the script's folder nor the working directory on sys.path), and ``python -m
    fastvmt_runner`` from the pack's folder; both list every option with its help."""
    r = subprocess.run([sys.executable, "-I", str(RUNNER), "--help"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("usage: fastvmt_runner.py"), r.stderr
    help_text = " ".join(r.stdout.split())
    assert "--seed SEED seed of every sampler" in help_text and "--steps STEPS step count of every sampler" in \
        help_text, r.stdout
    r = subprocess.run([sys.executable, "-m", "fastvmt_runner", "fastvmt_wan21_t2v_motion_transfer", "--dry-run",
                        "--prompt", "a cat", *TINY], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and sum(n["inputs"].get("text") == "a cat" for n in json.loads(r.stdout).values()) == 1


# ---------------------------------------------------------------------------
# the self-test (fastvmt_runner.py --selftest)
# ---------------------------------------------------------------------------

SELFTEST_API = WORKFLOW_DIR / "api" / "fastvmt_selftest_wan21_t2v.api.json"
SELFTEST_CLIP = WORKFLOW_DIR / "input" / "fastvmt_selftest_reference.mp4"


def test_selftest_prints_both_scores_and_writes_the_side_by_side_video(server, tmp_path):
    """The self-test end to end on the tiny model: the shipped clip uploaded, the plain run and
    the two FastVMT runs (paper, released) scored, the block to report printed with the scores
    the server's Motion Fidelity nodes wrote, and one video: reference | plain | FastVMT | released."""
    out_dir = tmp_path / "out"
    api = json.loads(SELFTEST_API.read_text("utf-8"))
    # the tiny size's 3 x 4 token grid is smaller than the released run's 21-token window
    released_extract = next(k for k, n in api.items() if n["class_type"] == "FastVMTExtractMotion"
                            and n["inputs"]["temporal_span"] == 4)
    code, out, err = run_runner(["--selftest", str(_tiny_workflow(tmp_path, SELFTEST_API)), "--server",
                                 server.address, *TINY, "--set", f"{released_extract}.window=3",
                                 "--out-dir", str(out_dir)], subprocess_run=True)
    assert code == 0, f"runner failed ({code}):\n{err}\n--- server log ---\n{server.log_tail()}"
    assert (server.base / "input" / SELFTEST_CLIP.name).read_bytes() == SELFTEST_CLIP.read_bytes()
    plain = float(re.search(r"motion fidelity, plain \(no FastVMT\): +(-?\d+\.\d{4})", out).group(1))
    guided = float(re.search(r"motion fidelity, FastVMT: +(-?\d+\.\d{4})", out).group(1))
    diff = float(re.search(r"FastVMT - plain: ([+-]\d+\.\d{4})", out).group(1))
    released = float(re.search(r"motion fidelity, released code: +(-?\d+\.\d{4})", out).group(1))
    assert abs(diff - (guided - plain)) <= 1.5e-4
    # the scores are those of the nodes scoring the KSampler's and the two Guidance Samplers' frames
    by_source = {api[api[nid]["inputs"]["generated"][0]]["inputs"]["samples"][0]: nid
                 for nid, n in api.items() if n["class_type"] == "FastVMTMotionFidelity"}
    kinds = {("released" if "settings" in api[sid]["inputs"] else api[sid]["class_type"]): nid
             for sid, nid in by_source.items()}
    prompt_id = re.search(r"queued prompt (\S+)", err).group(1)
    entry = server.get_json(f"/history/{prompt_id}")
    texts = {nid: node["text"][0] for nid, node in next(iter(entry.values()))["outputs"].items() if "text" in node}
    assert f"Motion fidelity: {plain:.4f}" in texts[kinds["KSampler"]]
    assert f"Motion fidelity: {guided:.4f}" in texts[kinds["FastVMTGuidanceSampler"]]
    assert f"Motion fidelity: {released:.4f}" in texts[kinds["released"]]
    # the shipped clip has points to track (random tiny models draw noise: their scores are 0)
    assert all(int(re.search(r"tracks: reference (\d+)", texts[nid]).group(1)) >= 100 for nid in kinds.values())
    assert "wan2.1_t2v_1.3B_fp16.safetensors" in out and "64x48, 9 frames, 4 steps euler/simple" in out
    assert "/issues" in out and "clearly above" in out
    videos = [Path(line) for line in out.splitlines() if line.endswith(".mp4") and Path(line).is_file()]
    assert len(videos) == 1 and videos[0].parent == out_dir
    assert f"video (reference | plain | FastVMT | released): {videos[0]}" in out
    # the reference (640x368) with the three 64x48 clips resized to its height, 8 px apart
    assert _read_video(videos[0]) == (9, 640 + 3 * (8 + int(368 * 64 / 48)), 368)


def test_selftest_checks_the_workflow_and_the_server_before_running(server, tmp_path):
    """Without a workflow --selftest takes the shipped one: here its text encoder is missing
    (named with its folder); a workflow without the two scores is refused before any upload."""
    code, _, err = run_runner(["--selftest", "--server", server.address, "--out-dir", str(tmp_path)])
    assert code == fastvmt_runner.EXIT_MISSING, err
    assert "umt5_xxl_fp8_e4m3fn_scaled.safetensors" in err and "models/text_encoders/" in err, err
    code, _, err = run_runner(["--selftest", str(_tiny_workflow(tmp_path)), "--server", server.address])
    assert code == fastvmt_runner.EXIT_USAGE and "one Motion Fidelity node scoring a run without FastVMT" in err
    assert "uploaded" not in err


def test_selftest_tells_the_plain_run_from_the_fastvmt_run():
    """The scores are told apart by what feeds them, not by node ids or titles: a copy of the
    self-test with the motion applied through Apply FastVMT Motion + KSampler still works; the
    released-flow run is the one whose settings say so; a workflow scoring two plain runs is
    refused, naming what it lacks."""
    api = json.loads(SELFTEST_API.read_text("utf-8"))
    ids = selftest.score_nodes(api)
    plain = next(k for k, n in api.items() if n["class_type"] == "KSampler")
    guided, released = sorted((k for k, n in api.items() if n["class_type"] == "FastVMTGuidanceSampler"),
                              key=lambda k: "settings" in api[k]["inputs"])
    source = {kind: api[api[nid]["inputs"]["generated"][0]]["inputs"]["samples"][0] for kind, nid in ids.items()}
    assert source == {"plain": plain, "fastvmt": guided, "released": released}
    motion = api[guided]["inputs"].pop("motion")
    api["90"] = {"class_type": "FastVMTApplyMotion", "inputs": {"model": api[guided]["inputs"]["model"],
                                                                 "motion": motion}}
    api[guided] = {"class_type": "KSampler", "inputs": {**api[guided]["inputs"], "model": ["90", 0]}}
    assert selftest.score_nodes(api) == ids
    api[ids["fastvmt"]]["inputs"]["generated"] = api[ids["plain"]]["inputs"]["generated"]
    with pytest.raises(ValueError, match="it has 2 and 0 "):
        selftest.score_nodes(api)
