"""The runner's view of a running prompt: progress lines and bars from ComfyUI's websocket,
the history entry once it has finished, and the files it wrote. Used by fastvmt_runner.py."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Optional

from tqdm import tqdm

if TYPE_CHECKING:
    from fastvmt_runner import Client


def _sorted_ids(prompt: dict):
    return sorted(prompt, key=lambda k: (0, int(k)) if k.isdigit() else (1, k))


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


async def _watch_ws(client: Client, prompt_id_box: dict, progress: Progress, ready: asyncio.Event,
                    deadline: Optional[float]):
    """Follow the websocket until our prompt finishes; returns ('success'|'error'|'interrupted', data)."""
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
                kind, data = event.get("type"), event.get("data") or {}
                if not isinstance(data, dict) or data.get("prompt_id") != pid:
                    continue
                if kind == "executing":
                    if data.get("node") is None:
                        return "success", data
                    progress.executing(data.get("display_node") or data.get("node"))
                elif kind == "execution_cached":
                    progress.cached(data.get("nodes"))
                elif kind == "progress":
                    progress.progress(data.get("value", 0), data.get("max", 1), data.get("node"))
                elif kind == "execution_success":
                    return "success", data
                elif kind == "execution_error":
                    return "error", data
                elif kind == "execution_interrupted":
                    return "interrupted", data


def _history_entry(client: Client, prompt_id: str):
    hist = client.get_json(f"/history/{prompt_id}")
    return hist.get(prompt_id)


def _poll_history(client: Client, prompt_id: str, deadline: Optional[float], interval=1.0):
    while True:
        entry = _history_entry(client, prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None and (
                entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
            return entry
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(interval)


def _error_from_history(entry: dict) -> Optional[dict]:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind in ("execution_error", "execution_interrupted"):
            return {"kind": kind, **data}
    return None


def output_files(entry: dict, prompt: dict) -> list[dict]:
    files = []
    for nid in _sorted_ids(entry.get("outputs", {})):
        for key, items in entry["outputs"][nid].items():
            if not isinstance(items, list):
                continue
            for it in items:
                if isinstance(it, dict) and "filename" in it and it.get("type", "output") == "output":
                    files.append({**it, "node": nid, "key": key})
    return files


