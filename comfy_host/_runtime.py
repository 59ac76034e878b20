"""Process-wide state of the host, its event loop and log capture (used by every job).

The state lives in ``sys.modules`` under one key so that a second import of the package
under another name (e.g. ``<repo>.comfy_host`` when the repo root is treated as a package)
shares the one booted ComfyUI instead of booting another.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
import types

_STATE_KEY = "_fastvmt_comfy_host_state"
STATE = sys.modules.get(_STATE_KEY)
if STATE is None:
    STATE = types.ModuleType(_STATE_KEY)
    STATE.host = None
    STATE.lock = threading.RLock()
    sys.modules[_STATE_KEY] = STATE

log = logging.getLogger("fastvmt.comfy_host")


def run_coro(coro):
    """Run a coroutine to completion on the host's event loop (the loop ComfyUI's
    PromptServer sends its messages through), or on a fresh one in a thread when called
    from a running loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        loop = getattr(STATE, "loop", None)
        # (not inside the except block: exceptions raised by the coroutine
        # would otherwise carry "no running event loop" as their context)
        return loop.run_until_complete(coro) if loop is not None else asyncio.run(coro)
    box = {}

    def runner():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=runner, name="fastvmt-comfy-coro")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def take_messages(server) -> list:
    """Messages ComfyUI's PromptServer queued for its websocket clients since the last call
    (``send_sync`` schedules them on the host loop; one turn of the loop delivers them)."""
    STATE.loop.run_until_complete(asyncio.sleep(0))
    out = []
    while not server.messages.empty():
        out.append(server.messages.get_nowait())
    return out


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def text(self, min_level=logging.WARNING) -> str:
        out = []
        for r in self.records:
            if r.levelno >= min_level:
                try:
                    out.append(r.getMessage())
                except Exception:  # noqa: BLE001
                    out.append(str(r.msg))
        return "\n".join(out)


class capture_logs:
    """Collect the root logger's records (at INFO and above) while the block runs."""

    def __enter__(self) -> LogCapture:
        self.handler = LogCapture()
        self.root = logging.getLogger()
        self.old_level = self.root.level
        self.root.addHandler(self.handler)
        if self.root.level > logging.INFO or self.root.level == logging.NOTSET:
            self.root.setLevel(logging.INFO)
        return self.handler

    def __exit__(self, *exc):
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.old_level)
        return False
