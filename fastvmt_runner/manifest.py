"""The batch's results manifest: an append-only JSONL file, one event a line, written and
flushed to disk as each thing happens (``Manifest.record``). Read back (``replay``), it says
which jobs are done (with their files), which were queued on a server and not seen to end
(the rerun asks that server before queueing them again), and each failure's error."""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobState:
    done: dict | None = None           # the "done" event
    queued: dict | None = None         # the last "queued" event not followed by an end
    errors: list = field(default_factory=list)


class Manifest:
    """``path``'s events; ``record`` appends one (thread-safe, flushed and fsynced)."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.events = read_events(self.path)

    def record(self, event: str, **data) -> dict:
        entry = {"event": event, "t": round(time.time(), 3), **data}
        line = json.dumps(entry, ensure_ascii=False)
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.events.append(entry)
        return entry

    def states(self) -> dict[str, JobState]:
        return replay(self.events)


def read_events(path: Path) -> list[dict]:
    """The manifest's events; a last line cut short by a crash is ignored."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def replay(events: list[dict]) -> dict[str, JobState]:
    """Job key -> its state after ``events``."""
    states: dict[str, JobState] = {}
    for e in events:
        key = e.get("job")
        if key is None:
            continue
        st = states.setdefault(key, JobState())
        kind = e.get("event")
        if kind == "queued":
            st.queued = e
        elif kind == "done":
            st.done, st.queued = e, None
        elif kind in ("failed", "cancelled", "lost"):
            if kind == "failed":
                st.errors.append(e.get("error", ""))
            st.queued = None
    return states
