"""A queued prompt, followed: ``POST /prompt`` (its refusal with the node errors), progress
lines and bars from ComfyUI's websocket, the ``/history`` entry once it has finished, and
the files it wrote."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from typing import Optional

from tqdm import tqdm

from .client import EXIT_REJECTED, Client, RunnerError
from .workflow import sorted_node_ids


class Progress:
    """One line per executed node and a tqdm bar for a node's steps (sampling, guidance, encoding)."""

    def __init__(self, prompt: dict, stream=None, quiet=False):
        self.prompt = prompt
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.node = None
        self.done_nodes = set()
        self.bar = None
        self.t0 = time.monotonic()

    def _title(self, nid):
        n = self.prompt.get(str(nid), {})
        return n.get("_meta", {}).get("title") or n.get("class_type", str(nid))

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _line(self, text):
        if not self.quiet:
            tqdm.write(text, file=self.stream)

    def executing(self, nid):
        if nid is None:
            return
        self._close_bar()
        self.node = str(nid)
        class_type = self.prompt.get(self.node, {}).get("class_type", "?")
        self._line(f"[{len(self.done_nodes) + 1}/{len(self.prompt)}] {self._title(nid)} ({class_type})")
        self.done_nodes.add(self.node)

    def cached(self, nodes):
        for n in nodes or ():
            self.done_nodes.add(str(n))

    def progress(self, value, maximum, nid=None):
        maximum = max(int(maximum), 1)
        if self.bar is None or self.bar.total != maximum:
            self._close_bar()
            # Log files get a line every 10%; a terminal gets a live bar.
            self.bar = tqdm(total=maximum, desc=f"    {self._title(nid or self.node)}", file=self.stream,
                            disable=self.quiet, dynamic_ncols=self.tty, leave=True,
                            mininterval=0.1 if self.tty else 0, miniters=None if self.tty else max(1, maximum // 10))
        self.bar.update(min(int(value), maximum) - self.bar.n)

    def finish(self, text):
        self._close_bar()
        self._line(text)


def _follow_event(progress: Progress, kind: str, data: dict) -> Optional[str]:
    """Show one of our prompt's events; the outcome when it ends the run."""
    if kind == "executing":
        if data.get("node") is None:
            return "success"
        progress.executing(data.get("display_node") or data.get("node"))
    elif kind == "execution_cached":
        progress.cached(data.get("nodes"))
    elif kind == "progress":
        progress.progress(data.get("value", 0), data.get("max", 1), data.get("node"))
    elif kind == "execution_success":
        return "success"
    elif kind == "execution_error":
        return "error"
    elif kind == "execution_interrupted":
        return "interrupted"
    return None


async def watch_websocket(client: Client, prompt_id_box: dict, progress: Progress, ready: asyncio.Event,
                          deadline: Optional[float]):
    """Follow the websocket until our prompt (its id put in ``prompt_id_box["id"]`` once
    queued) finishes; returns ('success'|'error'|'interrupted'|'closed'|'timeout', data)."""
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(client.ws_url, heartbeat=30, max_msg_size=0) as ws:
            ready.set()
            pending = []  # events that arrived before POST /prompt answered with our id
            while True:
                pid = prompt_id_box.get("id")
                if pid is not None and pending:
                    event = pending.pop(0)
                else:
                    if deadline is not None and time.monotonic() > deadline:
                        return "timeout", None
                    try:
                        msg = await asyncio.wait_for(ws.receive(), timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        return "closed", None
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue  # binary previews
                    try:
                        event = json.loads(msg.data)
                    except json.JSONDecodeError:
                        continue
                    if pid is None:
                        pending.append(event)
                        continue
                data = event.get("data") or {}
                if isinstance(data, dict) and data.get("prompt_id") == pid:
                    outcome = _follow_event(progress, event.get("type"), data)
                    if outcome is not None:
                        return outcome, data


def format_node_errors(prompt: dict, body) -> str:
    """The refusal of ``POST /prompt``: its error and each node's errors, by id and title."""
    if not isinstance(body, dict):
        return str(body)
    lines = []
    err = body.get("error")
    if isinstance(err, dict):
        lines.append(f"{err.get('message', '')}: {err.get('details', '')}".strip(": "))
    elif err:
        lines.append(str(err))
    for nid, ne in (body.get("node_errors") or {}).items():
        title = prompt.get(nid, {}).get("_meta", {}).get("title") or ne.get("class_type", "")
        for e in ne.get("errors", []):
            detail = e.get("details") or ""
            lines.append(f"  node {nid} ({ne.get('class_type', '?')}, '{title}'): {e.get('message', '')}"
                         + (f": {detail}" if detail else ""))
    return "\n".join(lines)


async def _open_websocket(client: Client, box: dict, progress: Progress, deadline, stderr):
    """The websocket watcher, connected, or None (no aiohttp, or no connection)."""
    if importlib.util.find_spec("aiohttp") is None:
        print("(no live progress: aiohttp is not installed; polling /history)", file=stderr)
        return None
    ready = asyncio.Event()
    watcher = asyncio.create_task(watch_websocket(client, box, progress, ready, deadline))
    done, _ = await asyncio.wait({watcher, asyncio.create_task(ready.wait())}, timeout=10,
                                 return_when=asyncio.FIRST_COMPLETED)
    if watcher in done and watcher.exception() is not None:
        print(f"(no live progress: websocket failed: {watcher.exception()})", file=stderr)
        return None
    return watcher


async def submit_and_watch(client: Client, prompt: dict, progress: Progress, deadline, stderr, on_queued=None):
    """Queue ``prompt`` (the runner's error with the node errors if refused) and follow it;
    returns (outcome, data with "prompt_id"); outcome "no-ws" or "closed": poll /history.
    ``on_queued(prompt_id)`` runs as soon as the server has accepted it."""
    box = {}
    watcher = await _open_websocket(client, box, progress, deadline, stderr)
    status, body = await asyncio.to_thread(client.post_json, "/prompt", {"prompt": prompt,
                                                                         "client_id": client.client_id})
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        if watcher is not None:
            watcher.cancel()
        raise RunnerError(EXIT_REJECTED, "ComfyUI rejected the prompt:\n" + format_node_errors(prompt, body))
    box["id"] = body["prompt_id"]
    print(f"queued prompt {box['id']}", file=stderr)
    if on_queued is not None:
        on_queued(box["id"])
    if watcher is None:
        return "no-ws", {"prompt_id": box["id"]}
    try:
        outcome, data = await watcher
    except Exception as e:  # noqa: BLE001  connection lost: fall back to polling
        print(f"(websocket lost: {e}; polling /history)", file=stderr)
        outcome, data = "closed", None
    return outcome, {**(data or {}), "prompt_id": box["id"]}


# ---------------------------------------------------------------------------
# the finished prompt
# ---------------------------------------------------------------------------

def history_entry(client: Client, prompt_id: str) -> Optional[dict]:
    return client.get_json(f"/history/{prompt_id}").get(prompt_id)


def poll_history(client: Client, prompt_id: str, deadline: Optional[float], interval=1.0) -> Optional[dict]:
    """The prompt's history entry once it has completed or failed; None past ``deadline``."""
    while True:
        entry = history_entry(client, prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None and (
                entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
            return entry
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(interval)


def error_from_history(entry: dict) -> Optional[dict]:
    """The execution error or interrupt of a history entry ({"kind": ..., its data}), or None."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind in ("execution_error", "execution_interrupted"):
            return {"kind": kind, **data}
    return None


def output_files(entry: dict, prompt: dict) -> list[dict]:
    """The files a finished prompt wrote into the output folder, in node-id order."""
    files = []
    for nid in sorted_node_ids(entry.get("outputs", {})):
        for key, items in entry["outputs"][nid].items():
            if not isinstance(items, list):
                continue
            for it in items:
                if isinstance(it, dict) and "filename" in it and it.get("type", "output") == "output":
                    files.append({**it, "node": nid, "key": key})
    return files
