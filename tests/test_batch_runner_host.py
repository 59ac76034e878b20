"""Batch mode of the headless runner (``python fastvmt_runner.py --batch JOBS --server A
--server B``) against real ComfyUI servers (``main.py --cpu`` in subprocesses, tiny
random-weight Wan under the shipped workflows' file names, the stand-in text encoder of
``comfy_host.stand_in_text_encoders``). Only the "not ComfyUI" and "no pack" servers are
stand-in HTTP servers. The long run with interrupts, model swaps and a killed server is
``python -m bench.soak``, not a test."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

import comfy_host
import fastvmt_runner
from bench import soak_setup
from fastvmt_runner.manifest import read_events

REPO = comfy_host.REPO_ROOT
SMALL = dict(width=64, height=48, frames=9, steps=4)


def _require_comfyui():
    if comfy_host.find_comfyui() is None:
        msg = "ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI"
        if os.environ.get("FASTVMT_REQUIRE_COMFYUI", "").strip().lower() in ("1", "true", "yes", "on"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    _require_comfyui()
    root = tmp_path_factory.mktemp("batch")
    models = root / "models"
    soak_setup.write_models(models)
    w = {"root": root, "models": models, "clip": soak_setup.write_clip(root / "clip.mp4"),
         "t2v": soak_setup.write_workflows(root)["t2v"]}
    yield w


@pytest.fixture(scope="module")
def servers(world):
    started = []
    try:
        for name in ("a", "b"):
            started.append(comfy_host.start_server(soak_setup.server_base(world["root"], name, world["models"])))
        yield started
    finally:
        for s in started:
            comfy_host.stop_server(s)


def jobs_file(path: Path, world, seeds, **extra) -> Path:
    lines = [{"workflow": str(world["t2v"]), "video": str(world["clip"]), "seed": s, **SMALL,
              "prompt": f"a fox {s}", **extra} for s in seeds]
    path.write_text("".join(json.dumps(j) + "\n" for j in lines), encoding="utf-8")
    return path


def run_batch_cli(args):
    out, err = io.StringIO(), io.StringIO()
    code = fastvmt_runner.run(["--batch", *map(str, args)], stdout=out, stderr=err)
    return code, err.getvalue()


def history_count(server) -> int:
    return len(server.get_json("/history"))


def done_events(manifest: Path) -> dict:
    counts = {}
    for e in read_events(manifest):
        if e["event"] == "done":
            counts[e["job"]] = counts.get(e["job"], 0) + 1
    return counts


# ---------------------------------------------------------------------------


def test_bad_job_file_is_refused_whole_with_line_numbers(world, servers, tmp_path):
    """Unknown workflow, missing file, bad override, unknown field, bad JSON: each named by
    line, and nothing reaches either server."""
    good = {"workflow": str(world["t2v"]), "video": str(world["clip"]), **SMALL}
    lines = [json.dumps(good),
             json.dumps({**good, "workflow": "no_such_workflow"}),
             json.dumps({**good, "video": str(tmp_path / "missing.mp4")}),
             json.dumps({**good, "set": {"Nonexistent node.cfg": 3}}),
             json.dumps({**good, "colour": "red"}),
             "{not json",
             json.dumps({**good, "frames": 10})]
    (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = [history_count(s) for s in servers]
    code, err = run_batch_cli([tmp_path / "jobs.jsonl", "--server", servers[0].address, "--server",
                               servers[1].address, "--out-dir", tmp_path / "out"])
    assert code == fastvmt_runner.EXIT_USAGE, err
    assert "6 bad lines, nothing was queued" in err, err
    for n, words in ((2, "no_such_workflow"), (3, "missing.mp4"), (4, "Nonexistent node"), (5, "colour"),
                     (6, "not JSON"), (7, "--frames 10")):
        assert any(line.strip().startswith(f"line {n}:") and words in line for line in err.splitlines()), (n, err)
    assert "line 1:" not in err
    assert [history_count(s) for s in servers] == before
    assert not (tmp_path / "out").exists()


def test_csv_job_file_takes_the_same_fields(world, tmp_path):
    """A CSV row's set column holds several NODE.INPUT=VALUE separated by ';'."""
    (tmp_path / "jobs.csv").write_text(
        "workflow,prompt,seed,video,set\n"
        f"{world['t2v']},a fox,7,{world['clip']},FastVMT Guidance Sampler.cfg=4.5; 11.inner_steps=2\n", encoding="utf-8")
    defaults = fastvmt_runner.build_parser().parse_args([])
    [job] = fastvmt_runner.read_jobs(tmp_path / "jobs.csv", defaults)
    assert job.line == 2 and job.fields["seed"] == 7
    prompt = json.loads(json.dumps(job.prompt))
    fastvmt_runner.apply_overrides(prompt, job.options(defaults), {})
    assert prompt["12"]["inputs"]["cfg"] == 4.5 and prompt["11"]["inputs"]["inner_steps"] == 2
    assert prompt["12"]["inputs"]["seed"] == 7


def test_batch_uses_both_servers_uploads_once_and_a_rerun_does_nothing(world, servers, tmp_path, monkeypatch):
    uploads = []
    real_request = requests.Session.request

    def counting(self, method, url, *a, **kw):
        if url.endswith("/upload/image"):
            uploads.append(url.rsplit("/upload", 1)[0])
        return real_request(self, method, url, *a, **kw)

    monkeypatch.setattr(requests.Session, "request", counting)
    jobs = jobs_file(tmp_path / "jobs.jsonl", world, [1, 2, 3, 4])
    args = [jobs, "--server", servers[0].address, "--server", servers[1].address, "--out-dir", tmp_path / "out"]
    code, err = run_batch_cli(args)
    assert code == 0, err
    manifest = tmp_path / "out" / "batch_manifest.jsonl"
    done = [e for e in read_events(manifest) if e["event"] == "done"]
    assert len(done) == 4 and len({e["job"] for e in done}) == 4
    assert {e["server"] for e in done} == {f"http://{s.address}" for s in servers}, done
    for e in done:   # each job its own folder, one video (and the soak workflows' latent)
        videos = [f for f in e["files"] if f.endswith(".mp4")]
        assert len(videos) == 1 and Path(videos[0]).parent.name == e["job"] and Path(videos[0]).is_file()
    assert sorted(uploads) == sorted(f"http://{s.address}" for s in servers), uploads
    before = [history_count(s) for s in servers]
    code, err = run_batch_cli(args)
    assert code == 0 and "4 of 4 jobs are done already" in err, err
    assert [history_count(s) for s in servers] == before
    assert all(n == 1 for n in done_events(manifest).values())


def test_rerun_collects_a_prompt_that_finished_after_the_crash(world, servers, tmp_path):
    """The manifest says queued, not done (the runner died in between): the rerun takes the
    result from the server's history and never queues the job again."""
    jobs = jobs_file(tmp_path / "jobs.jsonl", world, [11])
    args = [jobs, "--server", servers[0].address, "--out-dir", tmp_path / "out"]
    assert run_batch_cli(args)[0] == 0
    manifest = tmp_path / "out" / "batch_manifest.jsonl"
    events = read_events(manifest)
    manifest.write_text("".join(json.dumps(e) + "\n" for e in events if e["event"] != "done"), encoding="utf-8")
    first = [f for f in next(e for e in events if e["event"] == "done")["files"] if f.endswith(".mp4")][0]
    before = history_count(servers[0])
    code, err = run_batch_cli(args)
    assert code == 0 and "resume  line 1" in err, err
    assert history_count(servers[0]) == before
    [done] = [e for e in read_events(manifest) if e["event"] == "done"]
    again = [f for f in done["files"] if f.endswith(".mp4")][0]
    assert again != first and Path(first).is_file() and Path(again).is_file()  # kept both


def test_job_goes_to_the_server_with_the_shorter_queue(world, servers, tmp_path):
    """Server a is busy with another client's long prompt: the job goes to b."""
    busy = fastvmt_runner.Client(servers[0].address)
    prompt = comfy_host.stand_in_text_encoders(json.loads(world["t2v"].read_text("utf-8")))
    for node in prompt.values():
        node["inputs"].update({k: v for k, v in {"width": 64, "height": 48, "length": 9}.items() if k in node["inputs"]})
    prompt["4"]["inputs"]["file"] = "clip.mp4"
    busy.upload(world["clip"])
    prompt["12"]["inputs"]["steps"] = 200
    status, body = busy.post_json("/prompt", {"prompt": prompt, "client_id": busy.client_id})
    assert status == 200, body
    try:
        jobs = jobs_file(tmp_path / "jobs.jsonl", world, [21])
        code, err = run_batch_cli([jobs, "--server", servers[0].address, "--server", servers[1].address,
                                   "--out-dir", tmp_path / "out"])
        assert code == 0, err
        [done] = [e for e in read_events(tmp_path / "out" / "batch_manifest.jsonl") if e["event"] == "done"]
        assert done["server"] == f"http://{servers[1].address}"
    finally:
        busy.post_json("/queue", {"delete": [body["prompt_id"]]})
        busy.interrupt(body["prompt_id"])


def test_failing_job_is_retried_a_bounded_number_of_times_and_its_error_kept(world, servers, tmp_path):
    jobs = jobs_file(tmp_path / "jobs.jsonl", world, [31], set={"7.motion_block": 40})
    code, err = run_batch_cli([jobs, "--server", servers[0].address, "--retries", "1", "--out-dir", tmp_path / "out"])
    assert code == fastvmt_runner.EXIT_FAILED, err
    failed = [e for e in read_events(tmp_path / "out" / "batch_manifest.jsonl") if e["event"] == "failed"]
    assert [e["attempt"] for e in failed] == [1, 2] and failed[-1]["final"] is True
    assert "motion_block" in failed[-1]["error"] and "FAILED" in err, failed


class _StandIn(BaseHTTPRequestHandler):
    """A web server that is not ComfyUI (``/system_stats`` is HTML), or one without the pack."""
    pack = False

    def do_GET(self):
        if self.path == "/system_stats" and self.server.comfy:
            body, ctype = json.dumps({"system": {}, "devices": []}), "application/json"
        elif self.path == "/object_info" and self.server.comfy:
            body, ctype = json.dumps({"KSampler": {}, "LoadVideo": {}}), "application/json"
        else:
            body, ctype = "<html>hello</html>", "text/html"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("comfy", [False, True], ids=["not_comfyui", "no_pack"])
def test_a_server_that_is_not_comfyui_or_lacks_the_pack_is_named_and_skipped(world, servers, tmp_path, comfy):
    stand_in = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    stand_in.comfy = comfy
    threading.Thread(target=stand_in.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{stand_in.server_address[1]}"
        jobs = jobs_file(tmp_path / "jobs.jsonl", world, [41])
        code, err = run_batch_cli([jobs, "--server", address, "--server", servers[1].address,
                                   "--out-dir", tmp_path / "out"])
        assert code == 0, err
        why = "lacks the FastVMT pack" if comfy else "is this ComfyUI?"
        assert f"skipping server {address}:" in err and why in err, err
        code, err = run_batch_cli([jobs, "--server", address, "--out-dir", tmp_path / "out2"])
        assert code == fastvmt_runner.EXIT_SERVER and "no usable ComfyUI server" in err, err
    finally:
        stand_in.shutdown()


def test_killed_server_has_its_job_resubmitted_elsewhere(world, servers, tmp_path):
    victim = comfy_host.start_server(soak_setup.server_base(world["root"], "victim", world["models"]))
    killed = {}

    def on_progress(job, server, client, prompt_id, value, maximum, node):
        if server.base.endswith(victim.address) and not killed:
            os.kill(victim.proc.pid, signal.SIGKILL)
            killed["job"] = job.key

    try:
        defaults = fastvmt_runner.build_parser().parse_args(["--timeout", "300"])
        jobs = fastvmt_runner.read_jobs(jobs_file(tmp_path / "jobs.jsonl", world, [51, 52]), defaults)
        result = fastvmt_runner.run_batch(jobs, [victim.address, servers[1].address], defaults,
                                          out_dir=tmp_path / "out", server_wait=5, err=io.StringIO(),
                                          hooks=fastvmt_runner.Hooks(on_progress=on_progress))
    finally:
        comfy_host.stop_server(victim)
    assert killed and result.code == 0 and sorted(result.done) == sorted(j.key for j in jobs)
    events = read_events(tmp_path / "out" / "batch_manifest.jsonl")
    assert any(e["event"] == "lost" and e["job"] == killed["job"] for e in events)
    [done] = [e for e in events if e["event"] == "done" and e["job"] == killed["job"]]
    assert done["server"] == f"http://{servers[1].address}"


def test_ctrl_c_stops_the_batch_and_the_rerun_does_each_job_once(world, servers, tmp_path):
    jobs = jobs_file(tmp_path / "jobs.jsonl", world, [61, 62, 63])
    cmd = [sys.executable, str(REPO / "fastvmt_runner.py"), "--batch", str(jobs), "--server", servers[0].address,
           "--out-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / "out" / "batch_manifest.jsonl"
    deadline = time.monotonic() + 120
    while not any(e["event"] == "queued" for e in read_events(manifest)) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == fastvmt_runner.EXIT_INTERRUPTED, err
    assert "rerun the same command to resume" in err
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    counts = done_events(manifest)
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
