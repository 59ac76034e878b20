"""Soak: many runs of the batch runner on two local ComfyUI servers (CPU, tiny models).

    python -m bench.soak                  # 100 runs, about 15 minutes on 2 cores
    python -m bench.soak --runs 20 --out /tmp/soak

Text-to-video and image-to-video jobs alternate in short runs, so each server keeps
switching models, and every tenth finished job asks that server to unload its models
(``POST /free``); some jobs are interrupted in the middle of their guided steps; one
server is killed (SIGKILL) in the middle of a job and started again on the same port;
server A runs with ``--reserve-vram`` so large that FastVMT's memory reservation must make
room before each guidance. Per run it records the result or error, the time, the server's
RSS and what FastVMT left on the live models (``bench/soak_probe``), and afterwards it
runs a sample of finished jobs again alone, on a fresh server, and compares their sampled
latents (a Save Latent is added to each workflow: ComfyUI's mp4 encoding of equal frames
is not bit-reproducible, so the videos are compared only for the record). Loopback only; each
job has a timeout, so the soak ends. The report goes to ``bench/results/`` with
``--write-results``."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import comfy_host
import fastvmt_runner
from bench import soak_report
from bench import soak_setup as setup

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Chaos:
    """What the soak does to the batch, and what it saw."""
    servers: dict                   # name -> comfy_host.Server
    interrupt_keys: set             # jobs interrupted on their first attempt
    kill_after: int                 # kill server b once this many jobs are done
    down_s: float = 10.0
    records: list = field(default_factory=list)
    interrupts: dict = field(default_factory=dict)   # key -> what happened
    kill: dict = field(default_factory=dict)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def name_of(self, server) -> str:
        return next(n for n, s in self.servers.items() if server.base.endswith(s.address))

    def on_progress(self, job, server, client, prompt_id, value, maximum, node):
        with self.lock:
            seen = self.interrupts.get(job.key)
            if seen is not None and "t_end" not in seen:
                seen["ticks_after"] += 1
            elif job.key in self.interrupt_keys and seen is None and prompt_id and 3 <= value <= 10:
                # inside the first guided step: its inner steps are ticks 0-10
                self.interrupts[job.key] = {"tick": value, "of": maximum, "t": time.monotonic(), "ticks_after": 0}
                client.interrupt(prompt_id)
            if self.done >= self.kill_after and not self.kill and self.name_of(server) == "b":
                self._kill_b(job)

    def _kill_b(self, job) -> None:
        srv = self.servers["b"]
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait()
        self.kill = {"t_kill": time.monotonic(), "job": job.key, "line": job.line}
        threading.Thread(target=self._restart_b, daemon=True).start()

    def _restart_b(self) -> None:
        time.sleep(self.down_s)
        old = self.servers["b"]
        self.servers["b"] = comfy_host.start_server(old.base, port=old.port)
        self.kill["t_ready"] = time.monotonic()

    def on_end(self, job, server, outcome):
        name = self.name_of(server)
        srv = self.servers[name]
        probe = {}
        if srv.proc.poll() is None:
            try:
                probe = srv.get_json("/fastvmt_soak/state")
            except OSError:
                probe = {}
        with self.lock:
            seen = self.interrupts.get(job.key)
            if seen is not None and "t_end" not in seen:
                seen.update(t_end=time.monotonic(), error=outcome.error)
            if outcome.kind == "done":
                self.done += 1
                if self.done % 10 == 0 and probe:
                    server.client.post_json("/free", {"unload_models": True})
            if self.kill and job.key == self.kill["job"] and "t_lost" not in self.kill:
                self.kill["t_lost"] = time.monotonic()
            if self.kill and job.key == self.kill["job"] and outcome.kind == "done":
                self.kill["t_done_elsewhere"] = time.monotonic()
            if self.kill.get("t_ready") and name == "b" and outcome.kind == "done" and "t_b_first" not in self.kill:
                self.kill["t_b_first"] = time.monotonic()
        self.records.append({"job": job.key, "line": job.line, "kind": kind_of(job), "server": name,
                             "result": outcome.kind, "error": outcome.error, "seconds": round(outcome.seconds, 2),
                             "files": outcome.files, "rss_mb": probe.get("rss_mb"),
                             "leftovers": probe.get("leftover_count"), "live_patchers": probe.get("live_patchers"),
                             "guided_clones_alive": probe.get("guided_clones_alive"), "t": time.monotonic()})


def kind_of(job) -> str:
    return "i2v" if "image" in job.fields else "t2v"


def start_servers(root: Path, models: Path, reserve_gb: float) -> dict:
    servers = {}
    try:
        servers["a"] = comfy_host.start_server(setup.server_base(root, "a", models),
                                               extra_args=("--reserve-vram", str(reserve_gb)))
        servers["b"] = comfy_host.start_server(setup.server_base(root, "b", models))
    except BaseException:
        for s in servers.values():
            comfy_host.stop_server(s)
        raise
    return servers


def alone_check(jobs, sample_keys, records, root: Path, models: Path) -> list[dict]:
    """Run each sampled job again, alone, on a fresh server (nothing cached, nothing else
    queued), and compare its frames with the batch's output."""
    by_key = {j.key: j for j in jobs}
    outputs = {r["job"]: r["files"] for r in records if r["result"] == "done"}
    sample = [by_key[k] for k in sample_keys if k in outputs]
    defaults = fastvmt_runner.build_parser().parse_args(["--timeout", "300"])
    server = comfy_host.start_server(setup.server_base(root, "alone", models))
    try:
        result = fastvmt_runner.run_batch(sample, [server.address], defaults, out_dir=root / "alone", retries=0)
    finally:
        comfy_host.stop_server(server)
    rows = []
    for job in sample:
        alone = sorted((root / "alone" / job.key).iterdir())
        rows.append({"job": job.key, "kind": kind_of(job), **soak_report.compare_outputs(outputs[job.key], alone)})
    if result.failed:
        rows.append({"error": f"alone runs failed: {result.failed}"})
    return rows


def pick_sample(jobs, chaos: Chaos, size: int) -> list[str]:
    """Interrupted and killed jobs first, then both kinds evenly."""
    first = list(dict.fromkeys([k for k in chaos.interrupts][:3] + ([chaos.kill["job"]] if chaos.kill else [])))
    rest = [j.key for j in jobs if j.key not in first]
    by_kind = {k: [j.key for j in jobs if kind_of(j) == k and j.key in rest] for k in ("t2v", "i2v")}
    n = max(0, size - len(first))
    return first + by_kind["t2v"][: (n + 1) // 2] + by_kind["i2v"][: n // 2]


def run_soak(args) -> dict:
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    models = root / "models"
    setup.write_models(models)
    clip, image = setup.write_clip(root / "clip.mp4"), setup.write_image(root / "start.png")
    jobs_file = setup.write_jobs(root / "jobs.jsonl", setup.job_lines(args.runs, setup.write_workflows(root),
                                                                       clip, image))
    defaults = fastvmt_runner.build_parser().parse_args(["--timeout", str(args.job_timeout)])
    jobs = fastvmt_runner.read_jobs(jobs_file, defaults)
    servers = start_servers(root, models, args.reserve_gb)
    chaos = Chaos(servers, {j.key for i, j in enumerate(jobs) if i % 10 == 4}, kill_after=int(args.runs * 0.4))
    t0 = time.monotonic()
    try:
        result = fastvmt_runner.run_batch(
            jobs, [s.address for s in servers.values()], defaults, out_dir=root / "batch", retries=2,
            server_wait=120, hooks=fastvmt_runner.Hooks(chaos.on_progress, chaos.on_end))
        batch_s = time.monotonic() - t0
    finally:
        for s in servers.values():
            comfy_host.stop_server(s)
    logs = {n: s.log_path.read_text(errors="replace") for n, s in servers.items()}
    alone = alone_check(jobs, pick_sample(jobs, chaos, args.alone), chaos.records, root, models)
    return soak_report.build(args, jobs, result, chaos, alone, logs, batch_s, root / "batch" / "batch_manifest.jsonl")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100, help="jobs in the batch (default: %(default)s)")
    ap.add_argument("--out", default="fastvmt_soak", help="work folder (default: %(default)s)")
    ap.add_argument("--alone", type=int, default=10, help="finished jobs run again alone (default: %(default)s)")
    ap.add_argument("--job-timeout", type=float, default=300, help="seconds per job (default: %(default)s)")
    ap.add_argument("--reserve-gb", type=float, default=64.0,
                    help="server a's --reserve-vram: larger than the free memory, so that the reservation "
                         "makes room (default: %(default)s)")
    ap.add_argument("--write-results", action="store_true", help="write the report into bench/results/")
    args = ap.parse_args(argv)
    if comfy_host.find_comfyui() is None:
        print("ComfyUI not found: set COMFYUI_PATH or check it out at ~/comfy/ComfyUI", file=sys.stderr)
        return 2
    report = run_soak(args)
    print(soak_report.table(report))
    out = Path(args.out) / "soak_report.json"
    out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.write_results:
        dest = RESULTS / f"soak_cpu_{time.strftime('%Y-%m-%d')}.json"
        dest.write_text(json.dumps(report, indent=1), encoding="utf-8")
        print(f"wrote {dest}")
    return 0 if report["summary"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
