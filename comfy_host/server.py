"""ComfyUI as a separate process (its main.py on a free port): for the headless runner,
the browser tests and the thumbnail renderer."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from .locate import find_comfyui

PACK_DIR_NAME = "ComfyUI-FastVMT"  # the pack's folder name under custom_nodes/ in those servers
START_TIMEOUT_S = 120


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ComfyUI main.py (CPU) at ``address`` with ``base`` as its base directory."""

    def __init__(self, base: Path, port: int, proc, log_path: Path):
        self.base, self.port, self.proc, self.log_path = base, port, proc, log_path
        self.address = f"127.0.0.1:{port}"

    def log_tail(self, n=60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def get_json(self, path):
        import urllib.request
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=30) as r:
            return json.loads(r.read())


def _wait_until_answering(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {server.proc.returncode} during start-up:\n"
                               f"{server.log_tail()}")
        try:
            server.get_json("/system_stats")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ComfyUI did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.3)


def start_server(base: Path, comfyui: Optional[os.PathLike] = None, port: Optional[int] = None,
                 extra_args=()) -> Server:
    """Start ComfyUI's main.py on ``port`` (default: a free one) with ``base`` as base
    directory (its custom_nodes/ is the caller's to fill) and wait until it answers; raises
    RuntimeError with the log's tail when it exits or stays silent for 120 s."""
    import subprocess
    comfyui = comfyui or find_comfyui()
    if comfyui is None:
        raise RuntimeError("ComfyUI not found: set COMFYUI_PATH or check it out at ~/comfy/ComfyUI")
    port = port or free_port()
    log_path = Path(base) / "server.log"
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1" if (os.cpu_count() or 1) <= 4 else str(os.cpu_count()))
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-auto-launch", "--disable-api-nodes", *extra_args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(Path(base), port, proc, log_path)
    try:
        _wait_until_answering(server)
        return server
    except BaseException:
        stop_server(server)
        raise


def stand_in_text_encoders(prompt: dict) -> dict:
    """An API prompt for a server without UMT5-XXL (no tiny stand-in can exist for it: its
    configuration is fixed at about 5.7B parameters): CLIPTextEncode -> the test node
    FastVMTTestConditioning (seeded random conditioning, same text), CLIPLoader removed."""
    out = {}
    for nid, node in prompt.items():
        if node["class_type"] == "CLIPLoader":
            continue
        node = json.loads(json.dumps(node))
        if node["class_type"] == "CLIPTextEncode":
            node = {"class_type": "FastVMTTestConditioning", "_meta": node.get("_meta", {}),
                    "inputs": {"seed": int(nid), "tokens": 8, "text": node["inputs"]["text"]}}
        out[nid] = node
    dangling = [nid for nid, n in out.items() for v in n["inputs"].values()
                if isinstance(v, list) and len(v) == 2 and v[0] not in out]
    if dangling:
        raise ValueError(f"nodes still linked to a removed loader: {dangling}")
    return out


def stop_server(server: Server):
    import subprocess
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
