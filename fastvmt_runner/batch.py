"""Batch mode: many jobs over several ComfyUI servers through their own HTTP API
(``run_batch``). One job at a time per server, each to the free server with the shortest
queue; a server that stops answering has its job queued again elsewhere and is asked again
every few seconds; every event goes to the results manifest first, so a rerun after a crash
or Ctrl-C does each job exactly once."""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tqdm import tqdm

from .attempt import Outcome, job_options, queue_ids, recover_attempt, run_attempt
from .client import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SERVER, Client, RunnerError
from .manifest import Manifest

PROBE_EVERY_S = 2.0     # how often a server that stopped answering is asked again


@dataclass
class Server:
    base: str
    client: Client
    uploads: dict = field(default_factory=dict)   # shared by its jobs' clients
    alive: bool = True
    down_since: float | None = None
    busy: object = None                            # the job it runs, or None
    prompt_id: str | None = None
    last_probe: float = 0.0


@dataclass
class Hooks:
    """The soak's view into a batch (no-ops by default): ``on_progress(job, server,
    client, prompt_id, value, maximum, node)`` and ``on_end(job, server, outcome)``."""
    on_progress: object = None
    on_end: object = None


@dataclass
class BatchResult:
    code: int
    done: list = field(default_factory=list)       # keys done in this run
    skipped: list = field(default_factory=list)    # keys the manifest had done already
    failed: dict = field(default_factory=dict)     # key -> its errors
    events: list = field(default_factory=list)     # (time, text) of server losses and returns


def server_problem(client: Client, node_types: set) -> str | None:
    """Why this server cannot run the batch (not ComfyUI, lacks the pack or a node), or None."""
    try:
        client.system_stats()
        info = client.get_json("/object_info")
    except RunnerError as e:
        return str(e)
    except (requests.RequestException, ValueError) as e:
        return f"{client.base} does not answer like ComfyUI ({e.__class__.__name__})"
    missing = sorted(node_types - set(info))
    if any(t.startswith("FastVMT") for t in missing):
        return f"{client.base} lacks the FastVMT pack (no {', '.join(t for t in missing if t.startswith('FastVMT'))})"
    if missing:
        return f"{client.base} lacks the node types {', '.join(missing)}"
    return None


def usable_servers(addresses: list[str], jobs, err) -> list[Server]:
    node_types = {n["class_type"] for job in jobs for n in job.prompt.values()}
    servers = []
    for address in dict.fromkeys(addresses):
        client = Client(address)
        problem = server_problem(client, node_types)
        if problem:
            print(f"skipping server {address}: {problem}", file=err)
        else:
            servers.append(Server(client.base, client))
    if not servers:
        raise RunnerError(EXIT_SERVER, "no usable ComfyUI server: pass --server host:port for each one")
    return servers


def queue_length(server: Server) -> int | None:
    try:
        return len(queue_ids(server.client))
    except (RunnerError, requests.RequestException, ValueError):
        return None


class Batch:
    """The dispatch loop's state; ``run`` drives it to the end."""

    def __init__(self, jobs, servers, manifest: Manifest, defaults, out_dir: Path, retries: int,
                 server_wait: float, hooks: Hooks, err):
        self.servers, self.manifest, self.defaults = servers, manifest, defaults
        self.out_dir, self.retries, self.server_wait, self.hooks, self.err = out_dir, retries, server_wait, hooks, err
        self.results: queue.Queue = queue.Queue()
        self.result = BatchResult(EXIT_OK)
        self.attempts: dict = {}     # key -> failed attempts in this run
        self.losses: dict = {}       # key -> times its server was lost under it
        states = manifest.states()
        self.todo, self.recover = [], []
        for job in jobs:
            st = states.get(job.key)
            if st is not None and st.done is not None:
                self.result.skipped.append(job.key)
            elif st is not None and st.queued is not None:
                self.recover.append((job, st.queued))
            else:
                self.todo.append(job)
        total = len(jobs) - len(self.result.skipped)
        self.bar = tqdm(total=total, desc="batch", unit="job", file=err, dynamic_ncols=True,
                        disable=total == 0 or not hasattr(err, "write"))

    def say(self, text: str) -> None:
        tqdm.write(text, file=self.err)

    # ---- workers ------------------------------------------------------------------------

    def _start(self, server: Server, job, prompt_id: str | None = None) -> None:
        server.busy, server.prompt_id = job, prompt_id
        opts = job_options(job, self.defaults, self.out_dir)
        deadline = time.monotonic() + opts.timeout if opts.timeout and opts.timeout > 0 else None
        client = Client(server.base, upload_cache=server.uploads)   # its own websocket client id
        attempt = self.attempts.get(job.key, 0) + 1

        def queued_as(pid):
            server.prompt_id = pid
            self.manifest.record("queued", job=job.key, line=job.line, server=server.base, prompt_id=pid,
                                 attempt=attempt)

        def progress(value, maximum, node):
            if self.hooks.on_progress is not None:
                self.hooks.on_progress(job, server, client, server.prompt_id, value, maximum, node)

        def work():
            if prompt_id is not None:
                out = recover_attempt(client, job, opts, prompt_id, deadline)
            else:
                out = run_attempt(client, job, opts, deadline, queued_as, progress)
            self.results.put((server, job, out))

        threading.Thread(target=work, name=f"job-{job.key}", daemon=True).start()

    def _finish(self, server: Server, job, out: Outcome) -> None:
        server.busy = server.prompt_id = None
        if self.hooks.on_end is not None:
            self.hooks.on_end(job, server, out)
        where = f"line {job.line} ({job.key}) on {server.base}"
        if out.kind == "done":
            self.manifest.record("done", job=job.key, line=job.line, server=server.base, prompt_id=out.prompt_id,
                                 files=out.files, seconds=round(out.seconds, 3))
            self.result.done.append(job.key)
            self.bar.update(1)
            self.say(f"done    {where}: {out.seconds:.1f}s -> {', '.join(out.files) or '(no files)'}")
            return
        if out.kind in ("server_lost", "lost"):
            if out.kind == "server_lost":
                self._mark_down(server, out.error)
            self.losses[job.key] = self.losses.get(job.key, 0) + 1
            if self.losses[job.key] <= self.retries + 1:
                self.manifest.record("lost", job=job.key, line=job.line, server=server.base,
                                     prompt_id=out.prompt_id, error=out.error)
                self.say(f"requeue {where}: {out.error.split('. ')[0]}")
                self.todo.insert(0, job)
                return
            out.error = f"its server was lost {self.losses[job.key]} times under it; last: {out.error}"
        self._failed(server, job, out, where)

    def _failed(self, server: Server, job, out: Outcome, where: str) -> None:
        self.attempts[job.key] = n = self.attempts.get(job.key, 0) + 1
        final = n > self.retries or out.kind != "failed"
        self.manifest.record("failed", job=job.key, line=job.line, server=server.base, prompt_id=out.prompt_id,
                             error=out.error, attempt=n, final=final)
        if final:
            self.result.failed.setdefault(job.key, []).append(out.error)
            self.bar.update(1)
            self.say(f"FAILED  {where} (attempt {n}, no retries left): {out.error}")
        else:
            self.say(f"retry   {where} (attempt {n} of {self.retries + 1} failed): {out.error}")
            self.todo.append(job)

    # ---- servers ------------------------------------------------------------------------

    def _mark_down(self, server: Server, why: str) -> None:
        if server.alive:
            server.alive, server.down_since, server.last_probe = False, time.monotonic(), time.monotonic()
            self.result.events.append((time.time(), f"lost {server.base}"))
            self.say(f"server  {server.base} stopped answering ({why.split('. ')[0]}); its work goes elsewhere")

    def _probe(self, server: Server) -> None:
        now = time.monotonic()
        if server.alive or now - server.last_probe < PROBE_EVERY_S:
            return
        server.last_probe = now
        try:
            server.client.system_stats()
        except (RunnerError, requests.RequestException, ValueError):
            return
        server.alive = True
        self.result.events.append((time.time(), f"back {server.base}"))
        self.say(f"server  {server.base} answers again (after {now - server.down_since:.0f}s)")

    def _dispatch(self) -> None:
        waiting = []
        for job, queued in self.recover:
            server = next((s for s in self.servers if s.base == queued.get("server")), None)
            if server is None or not server.alive:   # not in this run: queue the job again
                self.todo.insert(0, job)
            elif server.busy is not None:             # one of its other prompts first
                waiting.append((job, queued))
            else:
                self.say(f"resume  line {job.line} ({job.key}): prompt {queued['prompt_id']} on {server.base}")
                self._start(server, job, queued["prompt_id"])
        self.recover = waiting
        while self.todo:
            free = [(n, i, s) for i, s in enumerate(self.servers) if s.alive and s.busy is None
                    for n in [queue_length(s)] if n is not None]
            if not free:
                return
            _, _, server = min(free)
            self._start(server, self.todo.pop(0))

    # ---- the loop -----------------------------------------------------------------------

    def _all_down_too_long(self) -> bool:
        if any(s.alive for s in self.servers) or any(s.busy for s in self.servers):
            return False
        return time.monotonic() - max(s.down_since for s in self.servers) > self.server_wait

    def run(self) -> BatchResult:
        try:
            while self.todo or self.recover or any(s.busy is not None for s in self.servers):
                for s in self.servers:
                    self._probe(s)
                self._dispatch()
                if self._all_down_too_long():
                    self.say(f"no server answered for {self.server_wait:g}s: stopping; rerun to resume "
                             f"({len(self.todo)} jobs left)")
                    self.result.code = EXIT_SERVER
                    return self.result
                try:
                    self._finish(*self.results.get(timeout=0.2))
                except queue.Empty:
                    pass
        except KeyboardInterrupt:
            self._cancel()
            self.result.code = EXIT_INTERRUPTED
            return self.result
        finally:
            self.bar.close()
        self.result.code = EXIT_FAILED if self.result.failed else EXIT_OK
        return self.result

    def _cancel(self) -> None:
        """Ctrl-C: stop our prompts (running or pending) so that the rerun owns them."""
        for s in self.servers:
            if s.busy is None or s.prompt_id is None:
                continue
            try:
                s.client.post_json("/queue", {"delete": [s.prompt_id]})
                s.client.interrupt(s.prompt_id)
            except (RunnerError, requests.RequestException):
                pass
            self.manifest.record("cancelled", job=s.busy.key, line=s.busy.line, server=s.base,
                                 prompt_id=s.prompt_id)
        self.say("interrupted: our running prompts were stopped; rerun the same command to resume")


def run_batch(jobs, addresses: list[str], defaults, *, out_dir, manifest_path=None, retries: int = 2,
              server_wait: float = 300.0, hooks: Hooks | None = None, err=None) -> BatchResult:
    """Run ``jobs`` (from ``read_jobs``) on the servers at ``addresses``."""
    err = err or sys.stderr
    out_dir = Path(out_dir)
    manifest = Manifest(manifest_path or out_dir / "batch_manifest.jsonl")
    servers = usable_servers(addresses, jobs, err)
    batch = Batch(jobs, servers, manifest, defaults, out_dir, retries, server_wait, hooks or Hooks(), err)
    if batch.result.skipped:
        batch.say(f"{len(batch.result.skipped)} of {len(jobs)} jobs are done already ({manifest.path})")
    result = batch.run()
    n_failed = len(result.failed)
    batch.say(f"batch: {len(result.done)} done now, {len(result.skipped)} done before, {n_failed} failed"
              + (f"; manifest {manifest.path}" if n_failed or result.code else ""))
    return result
