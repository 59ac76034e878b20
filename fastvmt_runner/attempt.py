"""One attempt at one batch job on one server, in a worker thread: ``run_attempt`` (queue
and follow) and ``recover_attempt`` (a prompt a crashed batch had queued). Each returns an
``Outcome``: done, failed (the job's fault: retried a bounded number of times), server_lost
(the server stopped answering) or lost (it answers but forgot the prompt); after either of
the last two the job is queued again, on whichever server is free."""
from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .client import EXIT_SERVER, EXIT_TIMEOUT, Client, RunnerError
from .job import prepare_prompt, raise_if_failed
from .watch import Progress, history_entry, output_files, submit_and_watch

BATCH_PREFIX = "fastvmt_batch"   # server-side output subfolder of a batch's videos


class PromptLost(RunnerError):
    """The server answers but no longer knows the prompt: it was restarted."""


@dataclass
class Outcome:
    kind: str                        # "done" | "failed" | "server_lost" | "lost"
    error: str = ""
    prompt_id: str | None = None
    files: list = field(default_factory=list)
    seconds: float = 0.0


class JobProgress(Progress):
    """No display; each progress event goes to ``on_progress(value, max, node)``."""

    def __init__(self, prompt: dict, on_progress=None):
        super().__init__(prompt, stream=io.StringIO(), quiet=True)
        self.on_progress = on_progress

    def progress(self, value, maximum, nid=None):
        if self.on_progress is not None:
            self.on_progress(value, maximum, nid)


def job_options(job, defaults, out_dir: Path):
    """The job's runner options: quiet, its own download folder, its own server-side prefix."""
    opts = job.options(defaults)
    opts.quiet, opts.no_download = True, False
    opts.out_dir = str(out_dir / job.key)
    has_save = any(n.get("class_type") == "SaveVideo" for n in job.prompt.values())
    if opts.output_prefix is None and has_save:
        opts.output_prefix = f"{BATCH_PREFIX}/{job.key}"
    return opts


def queue_ids(client: Client) -> set:
    q = client.get_json("/queue")
    return {item[1] for part in ("queue_running", "queue_pending") for item in q.get(part, [])}


def finished(entry) -> bool:
    status = (entry or {}).get("status", {})
    return bool(status.get("completed")) or status.get("status_str") == "error"


def settle(client: Client, prompt_id: str, deadline, interval=0.25) -> dict:
    """The prompt's finished /history entry. A prompt that is neither queued nor in the
    history was lost (the server restarted): the server's fault."""
    while True:
        queued = queue_ids(client)
        entry = history_entry(client, prompt_id)
        if finished(entry):
            return entry
        if prompt_id not in queued:
            entry = history_entry(client, prompt_id)   # it may have ended between the two asks
            if finished(entry):
                return entry
            raise PromptLost(EXIT_SERVER, f"the server no longer knows prompt {prompt_id} (restarted?)")
        if deadline is not None and time.monotonic() > deadline:
            client.interrupt(prompt_id)
            raise RunnerError(EXIT_TIMEOUT, f"timed out (prompt {prompt_id}); asked ComfyUI to interrupt it")
        time.sleep(interval)


def download_all(client: Client, entry: dict, prompt: dict, out_dir: Path) -> list[str]:
    """Every file the prompt wrote, into ``out_dir``, never over an existing file."""
    return [str(client.download(f, out_dir, overwrite=False)) for f in output_files(entry, prompt)]


def _guarded(fn, prompt_id_box: dict) -> Outcome:
    """``fn()``'s outcome, with the runner's and the network's errors sorted by whose fault."""
    start = time.monotonic()
    try:
        files = fn()
        return Outcome("done", prompt_id=prompt_id_box.get("id"), files=files, seconds=time.monotonic() - start)
    except RunnerError as e:
        kind = "lost" if isinstance(e, PromptLost) else "server_lost" if e.code == EXIT_SERVER else "failed"
        return Outcome(kind, str(e), prompt_id_box.get("id"), seconds=time.monotonic() - start)
    except (requests.RequestException, OSError, ValueError) as e:   # a server that died mid-answer
        return Outcome("server_lost", f"{e.__class__.__name__}: {e}", prompt_id_box.get("id"),
                       seconds=time.monotonic() - start)


def run_attempt(client: Client, job, opts, deadline, on_queued, on_progress=None) -> Outcome:
    """Check, upload, queue and follow ``job`` on ``client``'s server, then download."""
    box = {}
    sink = io.StringIO()

    def queued_as(prompt_id):
        box["id"] = prompt_id
        on_queued(prompt_id)

    def attempt():
        queued, _ = prepare_prompt(client, job.prompt, opts, sink)
        progress = JobProgress(queued, on_progress)
        outcome, _ = asyncio.run(submit_and_watch(client, queued, progress, deadline, sink, on_queued=queued_as))
        if outcome == "timeout":
            client.interrupt(box["id"])
            raise RunnerError(EXIT_TIMEOUT, f"timed out (prompt {box['id']}); asked ComfyUI to interrupt it")
        entry = settle(client, box["id"], deadline)
        raise_if_failed(entry, queued, box["id"])
        return download_all(client, entry, queued, Path(opts.out_dir))

    return _guarded(attempt, box)


def recover_attempt(client: Client, job, opts, prompt_id: str, deadline) -> Outcome:
    """Wait for (or read the end of) a prompt an earlier batch queued, then download."""
    box = {"id": prompt_id}

    def attempt():
        entry = settle(client, prompt_id, deadline)
        prompt = entry.get("prompt", [None, None, job.prompt])[2]
        raise_if_failed(entry, prompt, prompt_id)
        return download_all(client, entry, prompt, Path(opts.out_dir))

    return _guarded(attempt, box)
