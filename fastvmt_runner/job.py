"""One prompt on one server, from the parsed options to the downloaded files:
``run_prompt``. In order: the local files (before any network), the server and the
workflow's node types, models and input files (before any upload), the uploads, the
overrides, then queue, follow, check and download."""
from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from pathlib import Path

from .client import EXIT_FAILED, EXIT_TIMEOUT, Client, RunnerError
from .preflight import preflight
from .watch import Progress, error_from_history, output_files, poll_history, submit_and_watch
from .workflow import FILE_FLAGS, FileArgs, apply_overrides, file_args


@dataclass
class RunResult:
    prompt_id: str
    prompt: dict     # as queued: overrides applied, uploaded names set
    entry: dict      # its /history entry
    stats: dict      # the server's /system_stats
    seconds: float   # from queueing to the end of the run
    paths: list      # the files downloaded (with --no-download: their names under output/)


def upload_files(client: Client, files: FileArgs, stderr) -> dict:
    """Upload the local files of the file flags; flag -> the name each got on the server."""
    uploaded = {}
    for flag, local in files.uploads.items():
        uploaded[flag] = client.upload(local, FILE_FLAGS[flag][2])
        print(f"uploaded {local} -> input/{uploaded[flag]}", file=stderr)
    return uploaded


def _finished_entry(client: Client, options, outcome: str, prompt_id: str, deadline) -> dict:
    """The prompt's history entry; the runner's error for a timeout or a missing entry."""
    entry = None
    if outcome in ("success", "error", "interrupted", "closed", "no-ws"):
        # history is written just after the final websocket event
        entry = poll_history(client, prompt_id, deadline if outcome in ("closed", "no-ws") else
                             time.monotonic() + 30, interval=0.2 if outcome != "no-ws" else 1.0)
    if entry is None:
        if outcome == "timeout" or deadline is not None:
            client.interrupt(prompt_id)
            raise RunnerError(EXIT_TIMEOUT, f"timed out after {options.timeout:g}s (prompt {prompt_id}); "
                                            "asked ComfyUI to interrupt it")
        raise RunnerError(EXIT_FAILED, f"prompt {prompt_id} finished but has no history entry")
    return entry


def raise_if_failed(entry: dict, prompt: dict, prompt_id: str) -> None:
    """The runner's error for a history entry that failed or was interrupted."""
    err = error_from_history(entry)
    status = entry.get("status", {}).get("status_str")
    if err is None and status != "error":
        return
    err = err or {}
    if err.get("kind") == "execution_interrupted":
        raise RunnerError(EXIT_FAILED, f"prompt {prompt_id} was interrupted")
    title = prompt.get(str(err.get("node_id")), {}).get("_meta", {}).get("title", "")
    raise RunnerError(EXIT_FAILED, f"ComfyUI failed in node {err.get('node_id')} ({err.get('node_type')}, "
                                   f"'{title}'): {err.get('exception_type', '')}: "
                                   f"{err.get('exception_message', '').strip()}")


def fetch_outputs(client: Client, options, entry: dict, prompt: dict, stdout, stderr) -> list[str]:
    """Download (with --no-download: name) the files the run wrote; prints and returns their paths."""
    files = output_files(entry, prompt)
    if not files:
        print("the workflow finished but wrote no output files", file=stderr)
    paths = []
    for f in files:
        where = f"{f.get('subfolder') + '/' if f.get('subfolder') else ''}{f['filename']}"
        paths.append(f"output/{where}" if options.no_download else str(client.download(f, Path(options.out_dir))))
        print(paths[-1], file=stdout)
    return paths


def _queue_and_follow(client: Client, prompt: dict, progress: Progress, deadline, stderr):
    try:
        return asyncio.run(submit_and_watch(client, prompt, progress, deadline, stderr))
    except KeyboardInterrupt:
        try:
            client.interrupt()
            print("\ninterrupted: asked ComfyUI to stop the running prompt", file=stderr)
        except RunnerError:
            pass
        raise


def prepare_prompt(client: Client, prompt: dict, options, stderr) -> tuple[dict, dict]:
    """Check, upload and override: (the prompt to queue, the server's /system_stats). Nothing
    is uploaded before the server has the workflow's node types, models and input files."""
    trial = copy.deepcopy(prompt)
    apply_overrides(trial, options, {})     # usage errors before any network
    files = file_args(options)              # a missing local file, too
    stats = client.system_stats()
    preflight(client, trial, files)
    uploaded = upload_files(client, files, stderr)
    queued = copy.deepcopy(prompt)
    for change in apply_overrides(queued, options, uploaded):
        print(f"  {change}", file=stderr)
    return queued, stats


def run_prompt(client: Client, prompt: dict, options, stdout, stderr) -> RunResult:
    """Run ``prompt`` (an API prompt as loaded) on ``client``'s server with ``options`` (the
    runner's parsed command line: the overrides, --timeout, --quiet, --out-dir,
    --no-download); prints the downloaded paths to ``stdout``, progress to ``stderr``.
    Raises RunnerError (its ``code`` is the exit code), or KeyboardInterrupt after asking
    the server to stop."""
    queued, stats = prepare_prompt(client, prompt, options, stderr)
    deadline = time.monotonic() + options.timeout if options.timeout and options.timeout > 0 else None
    progress = Progress(queued, stream=stderr, quiet=options.quiet)
    outcome, data = _queue_and_follow(client, queued, progress, deadline, stderr)
    prompt_id = data["prompt_id"]
    entry = _finished_entry(client, options, outcome, prompt_id, deadline)
    raise_if_failed(entry, queued, prompt_id)
    seconds = time.monotonic() - progress.t0
    progress.finish(f"done in {seconds:.1f}s (prompt {prompt_id})")
    paths = fetch_outputs(client, options, entry, queued, stdout, stderr)
    return RunResult(prompt_id, queued, entry, stats, seconds, paths)
