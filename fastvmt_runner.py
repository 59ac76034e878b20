#!/usr/bin/env python3
"""Run a FastVMT API workflow on a running ComfyUI, headless.

    python fastvmt_runner.py fastvmt_wan21_t2v_motion_transfer --video clip.mp4 \\
        --prompt "a red fox running through snow" --steps 50 --seed 7

The workflow is an API-format file (``example_workflows/api/*.api.json``, or any file
saved with the frontend's "Export (API)"), or the bare name of a shipped example. The
runner

1. checks the server (``/system_stats``), that every node type is installed and that every
   model file the loaders name is in ComfyUI's ``models/`` folders;
2. uploads the reference video (``--video``) and a saved motion (``--motion``) through
   ``/upload/image`` when they are local files;
3. applies the overrides, queues the prompt (``POST /prompt``) and shows progress from the
   websocket (``/ws``);
4. waits for the result (``/history``) and downloads the videos it wrote (``/view``) into
   ``--out-dir``.

``--selftest`` runs the self-test (``fastvmt_selftest_wan21_t2v`` unless a workflow is
named): it uploads the reference clip shipped in ``example_workflows/input/`` (unless
``--video`` is given), samples one prompt and seed without and with FastVMT, and prints
both Motion Fidelity scores, their difference and the side-by-side video, with how to
read and report them (``fastvmt_selftest.py``).

Overrides find their nodes by structure, not by id: ``--prompt`` sets the ``text`` of the
text-encoder nodes that feed a sampler's ``positive`` input (repeat it to give one text
per sampler, in node-id order), ``--negative`` those feeding ``negative``; ``--width``,
``--height`` and ``--frames`` set every node with ``width`` / ``height`` / ``length``
widgets (reference extraction and empty latent together), ``--seed`` / ``--steps`` every
sampler, ``--output-prefix`` every Save Video node.

Exit codes: 0 done, 2 bad arguments or workflow, 3 server unreachable, 4 missing model,
node type or input file, 5 prompt rejected by ComfyUI (its node_errors are printed),
6 execution failed or was interrupted, 7 timed out. HTTP goes through ``requests``, the
progress display through ``tqdm``, the websocket through ``aiohttp`` (tqdm and aiohttp come
with ComfyUI; without aiohttp the runner polls ``/history``).
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import mimetypes
import os
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Optional

import requests

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:   # fastvmt_selftest.py next to this script, also when loaded by path
    sys.path.insert(0, str(HERE))
import fastvmt_selftest  # noqa: E402
from fastvmt_runner_watch import (Progress, _error_from_history, _poll_history, _sorted_ids,  # noqa: E402
                                  _watch_ws, output_files)
from fastvmt_runner_workflow import (EXIT_FAILED, EXIT_MISSING, EXIT_OK, EXIT_REJECTED,  # noqa: E402,F401
                                     EXIT_SERVER, EXIT_TIMEOUT, EXIT_USAGE, RunnerError, apply_overrides,
                                     load_workflow)

# loader class -> [(input name, models/ folder)]
MODEL_INPUTS = {
    "UNETLoader": [("unet_name", "diffusion_models")],
    "CLIPLoader": [("clip_name", "text_encoders")],
    "DualCLIPLoader": [("clip_name1", "text_encoders"), ("clip_name2", "text_encoders")],
    "VAELoader": [("vae_name", "vae")],
    "CheckpointLoaderSimple": [("ckpt_name", "checkpoints")],
    "LoraLoader": [("lora_name", "loras")],
    "LoraLoaderModelOnly": [("lora_name", "loras")],
    "CLIPVisionLoader": [("clip_name", "clip_vision")],
}
INPUT_FILE_INPUTS = {"LoadVideo": "file", "FastVMTLoadMotion": "motion_file", "LoadImage": "image"}
VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".gif", ".webp", ".avi"}


# ---------------------------------------------------------------------------
# HTTP (requests)
# ---------------------------------------------------------------------------

class Client:
    def __init__(self, server: str, timeout: float = 30.0):
        server = server.strip().rstrip("/")
        if "://" not in server:
            server = "http://" + server
        self.base = server
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex
        self.session = requests.Session()

    @property
    def ws_url(self) -> str:
        scheme = "wss" if self.base.startswith("https") else "ws"
        return f"{scheme}://{self.base.split('://', 1)[1]}/ws?clientId={self.client_id}"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            return self.session.request(method, self.base + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise RunnerError(EXIT_SERVER, f"cannot reach ComfyUI at {self.base} ({exc.__class__.__name__}). Is it "
                                           f"running? Start it with 'python main.py --listen 127.0.0.1 --port "
                                           f"{urllib.parse.urlsplit(self.base).port or 8188}' or pass --server "
                                           "host:port.") from None

    def get_json(self, path: str):
        r = self._request("GET", path)
        r.raise_for_status()
        return r.json()

    def post_json(self, path: str, payload) -> tuple[int, object]:
        r = self._request("POST", path, json=payload)
        return r.status_code, _json_or_text(r.content)

    def upload(self, path: Path, subfolder: str = "") -> str:
        """Upload a local file into ComfyUI's input folder; returns the name to use in a widget."""
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with open(path, "rb") as fh:
            r = self._request("POST", "/upload/image", files={"image": (path.name, fh, ctype)},
                              data={"type": "input", "overwrite": "true", "subfolder": subfolder})
        if r.status_code != 200:
            raise RunnerError(EXIT_FAILED, f"upload of {path} failed: HTTP {r.status_code} {r.content[:200]!r}")
        info = r.json()
        name = info["name"]
        return f"{info['subfolder']}/{name}" if info.get("subfolder") else name

    def download(self, entry: dict, dest_dir: Path) -> Path:
        params = {"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                  "type": entry.get("type", "output")}
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / entry["filename"]
        with self._request("GET", "/view", params=params, stream=True) as r:
            r.raise_for_status()
            with open(dest, "wb") as f:
                for chunk in r.iter_content(1 << 20):
                    f.write(chunk)
        return dest


def _json_or_text(raw: bytes):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw.decode("utf-8", "replace")


# (workflow loading and overrides: fastvmt_runner_workflow.py)

# ---------------------------------------------------------------------------
# pre-flight checks
# ---------------------------------------------------------------------------

def preflight(client: Client, prompt: dict):
    try:
        client.get_json("/system_stats")
    except requests.HTTPError as e:
        raise RunnerError(EXIT_SERVER, f"{client.base} answered HTTP {e.response.status_code} on /system_stats: "
                                       "is this ComfyUI?") from None
    missing_types, infos = [], {}
    for ct in sorted({n["class_type"] for n in prompt.values()}):
        info = client.get_json(f"/object_info/{urllib.parse.quote(ct)}")
        if ct not in info:
            missing_types.append(ct)
        else:
            infos[ct] = info[ct]
    if missing_types:
        hint = " (the FastVMT nodes: is the pack in ComfyUI/custom_nodes and did it load? see ComfyUI's log)" \
            if any(t.startswith("FastVMT") for t in missing_types) else ""
        raise RunnerError(EXIT_MISSING, f"ComfyUI does not know the node type(s) {', '.join(missing_types)}{hint}")
    lists = {}
    missing = []
    for nid in _sorted_ids(prompt):
        node = prompt[nid]
        for key, folder in MODEL_INPUTS.get(node["class_type"], ()):
            name = node["inputs"].get(key)
            if not isinstance(name, str):
                continue
            if folder not in lists:
                try:
                    lists[folder] = client.get_json(f"/models/{folder}")
                except requests.HTTPError:
                    lists[folder] = None
            if lists[folder] is not None and name not in lists[folder]:
                missing.append(f"  {name}: put it in ComfyUI's models/{folder}/ folder (node {nid} "
                               f"{node['class_type']}, input '{key}')")
    if missing:
        raise RunnerError(EXIT_MISSING, "model file(s) missing on the server:\n" + "\n".join(missing))
    for nid in _sorted_ids(prompt):
        node = prompt[nid]
        key = INPUT_FILE_INPUTS.get(node["class_type"])
        name = node["inputs"].get(key) if key else None
        if not isinstance(name, str):
            continue
        options = combo_options(infos.get(node["class_type"], {}), key)
        if options is not None and name not in options:
            raise RunnerError(EXIT_MISSING, f"input file {name!r} (node {nid} {node['class_type']}, input '{key}') "
                                            "is not in ComfyUI's input folder: pass a local file with "
                                            f"--{ {'motion_file': 'motion', 'image': 'image'}.get(key, 'video')} to upload it")


def combo_options(info: dict, key: str) -> Optional[list]:
    """The allowed values of a combo input in an /object_info entry (V1 list or V3 'COMBO' + options)."""
    for section in ("required", "optional"):
        spec = info.get("input", {}).get(section, {}).get(key)
        if not spec:
            continue
        if isinstance(spec[0], list):
            return spec[0]
        if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
            return spec[1].get("options")
    return None


def format_node_errors(prompt: dict, body) -> str:
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


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fastvmt_runner.py",
        description="Run a (FastVMT) API-format workflow on a running ComfyUI and download the videos it makes.",
        epilog="Exit codes: 0 ok, 2 usage/workflow, 3 server unreachable, 4 missing model/node/input, "
               "5 prompt rejected, 6 execution failed, 7 timeout.")
    ap.add_argument("workflow", nargs="?", help="API-format workflow file (*.api.json) or the name of a shipped "
                                                "example, e.g. fastvmt_wan21_t2v_motion_transfer")
    ap.add_argument("--selftest", action="store_true",
                    help=f"run the self-test ({fastvmt_selftest.WORKFLOW} unless a workflow is named; the shipped "
                         "clip unless --video is given) and print both Motion Fidelity scores")
    ap.add_argument("--server", default=os.environ.get("COMFYUI_SERVER", "127.0.0.1:8188"),
                    help="ComfyUI address host:port or URL (default: $COMFYUI_SERVER or 127.0.0.1:8188)")
    ap.add_argument("--video", help="reference video: a local file (uploaded to ComfyUI's input folder) or the "
                                    "name of a file already in that folder")
    ap.add_argument("--image", help="start image of an image-to-video workflow: a local file (uploaded to "
                                    "ComfyUI's input folder) or the name of a file already in that folder")
    ap.add_argument("--motion", help="saved motion (.safetensors) for Load Motion: a local file (uploaded to "
                                     "input/fastvmt/) or a name relative to the input folder")
    ap.add_argument("--prompt", action="append", help="positive prompt; repeat to give one per sampler")
    ap.add_argument("--negative", action="append", help="negative prompt; repeat to give one per sampler")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--width", type=int, help="video width (multiple of 16), reference and generation")
    ap.add_argument("--height", type=int, help="video height (multiple of 16), reference and generation")
    ap.add_argument("--frames", type=int, help="video length in frames (4k+1: 33, 49, 81, ...)")
    ap.add_argument("--output-prefix", help="Save Video filename_prefix (a subfolder of ComfyUI's output folder "
                                            "is allowed, e.g. video/fox)")
    ap.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                    help="any other input: NODE is a node id or its exact title; VALUE is JSON or a string")
    ap.add_argument("--out-dir", default="fastvmt_outputs", help="where to download results (default: %(default)s)")
    ap.add_argument("--no-download", action="store_true", help="do not download the results")
    ap.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the final API prompt (after overrides, no upload) and exit; needs no server")
    ap.add_argument("--quiet", action="store_true", help="no progress display")
    return ap


def run(argv=None, stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return _run(args, stdout, stderr)
    except RunnerError as e:
        print(f"error: {e}", file=stderr)
        return e.code


def _check_size_flags(args) -> None:
    for flag in ("width", "height"):
        v = getattr(args, flag)
        if v is not None and (v < 16 or v % 16):
            raise RunnerError(EXIT_USAGE, f"--{flag} {v}: must be a multiple of 16 (Wan's VAE and patch size)")
    if args.frames is not None and (args.frames < 1 or (args.frames - 1) % 4):
        raise RunnerError(EXIT_USAGE, f"--frames {args.frames}: must be 4k+1 (1, 5, 9, ..., 81)")


def _upload_inputs(client: Client, args, stderr) -> dict:
    """Upload the local files given for --video, --image and --motion; a value that is no
    local file is taken as the name of a file already in ComfyUI's input folder (checked in
    preflight)."""
    uploaded = {}
    for key, value, subfolder in (("video", args.video, ""), ("image", args.image, ""),
                                  ("motion", args.motion, "fastvmt")):
        if value is None:
            continue
        local = Path(value).expanduser()
        if local.is_file():
            uploaded[key] = client.upload(local, subfolder)
            print(f"uploaded {local} -> input/{uploaded[key]}", file=stderr)
    return uploaded


def _finished_entry(client: Client, args, outcome: str, prompt_id: str, deadline) -> dict:
    """The prompt's history entry; raises the runner's error for a timeout, a failure or an
    interrupt."""
    entry = None
    if outcome in ("success", "error", "interrupted", "closed", "no-ws"):
        # history is written just after the final websocket event
        entry = _poll_history(client, prompt_id, deadline if outcome in ("closed", "no-ws") else
                              time.monotonic() + 30, interval=0.2 if outcome != "no-ws" else 1.0)
    if entry is None:
        if outcome == "timeout" or deadline is not None:
            client.post_json("/interrupt", {"prompt_id": prompt_id})
            raise RunnerError(EXIT_TIMEOUT, f"timed out after {args.timeout:g}s (prompt {prompt_id}); "
                                            "asked ComfyUI to interrupt it")
        raise RunnerError(EXIT_FAILED, f"prompt {prompt_id} finished but has no history entry")
    return entry


def _raise_if_failed(entry: dict, prompt: dict, prompt_id: str) -> None:
    err = _error_from_history(entry)
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


def _fetch_outputs(client: Client, args, entry: dict, prompt: dict, stdout, stderr) -> list[str]:
    """Downloads (or, with --no-download, names) the files the run wrote; prints and
    returns their paths."""
    files = output_files(entry, prompt)
    if not files:
        print("the workflow finished but wrote no output files", file=stderr)
    paths = []
    for f in files:
        where = f"{f.get('subfolder') + '/' if f.get('subfolder') else ''}{f['filename']}"
        paths.append(f"output/{where}" if args.no_download else str(client.download(f, Path(args.out_dir))))
        print(paths[-1], file=stdout)
    return paths


def _selftest_setup(args, prompt: dict) -> None:
    """--selftest: the workflow scores a plain and a FastVMT run (checked before anything
    runs), and the reference is the shipped clip unless --video names another."""
    if not args.selftest:
        return
    try:
        fastvmt_selftest.score_nodes(prompt)
    except ValueError as e:
        raise RunnerError(EXIT_USAGE, str(e)) from None
    if args.video is None:
        if not fastvmt_selftest.CLIP.is_file():
            raise RunnerError(EXIT_MISSING, f"the self-test clip {fastvmt_selftest.CLIP} is missing: reinstall the "
                                            "pack or pass --video")
        args.video = str(fastvmt_selftest.CLIP)


def _run(args, stdout, stderr) -> int:
    if args.workflow is None and not args.selftest:
        raise RunnerError(EXIT_USAGE, "name a workflow (an .api.json file or a shipped example), or use --selftest")
    prompt = load_workflow(args.workflow or fastvmt_selftest.WORKFLOW)
    _check_size_flags(args)
    _selftest_setup(args, prompt)
    if args.dry_run:
        prompt = copy.deepcopy(prompt)
        apply_overrides(prompt, args, {})
        print(json.dumps(prompt, indent=2, ensure_ascii=False), file=stdout)
        return EXIT_OK

    client = Client(args.server)
    # check the server first: uploads need it anyway
    try:
        stats = client.get_json("/system_stats")
    except requests.HTTPError as e:
        raise RunnerError(EXIT_SERVER, f"{client.base} answered HTTP {e.response.status_code}: is this "
                                       "ComfyUI?") from None
    uploaded = _upload_inputs(client, args, stderr)
    prompt = copy.deepcopy(prompt)
    for change in apply_overrides(prompt, args, uploaded):
        print(f"  {change}", file=stderr)
    preflight(client, prompt)

    deadline = time.monotonic() + args.timeout if args.timeout and args.timeout > 0 else None
    progress = Progress(prompt, stream=stderr, quiet=args.quiet)
    try:
        outcome, data = asyncio.run(_submit_and_watch(client, prompt, progress, deadline, stderr))
    except KeyboardInterrupt:
        try:
            client.post_json("/interrupt", {})
            print("\ninterrupted: asked ComfyUI to stop the running prompt", file=stderr)
        except RunnerError:
            pass
        return 130
    prompt_id = data["prompt_id"]
    entry = _finished_entry(client, args, outcome, prompt_id, deadline)
    _raise_if_failed(entry, prompt, prompt_id)
    seconds = time.monotonic() - progress.t0
    progress.finish(f"done in {seconds:.1f}s (prompt {prompt_id})")
    paths = _fetch_outputs(client, args, entry, prompt, stdout, stderr)
    if args.selftest:
        try:
            print(fastvmt_selftest.summary(prompt, entry, stats, seconds, paths), file=stdout)
        except ValueError as e:
            raise RunnerError(EXIT_FAILED, str(e)) from None
    return EXIT_OK


async def _submit_and_watch(client: Client, prompt: dict, progress: Progress, deadline, stderr):
    box = {}
    ready = asyncio.Event()
    watcher = None
    try:
        import aiohttp  # noqa: F401
        watcher = asyncio.create_task(_watch_ws(client, box, progress, ready, deadline))
        done, _ = await asyncio.wait({watcher, asyncio.create_task(ready.wait())}, timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and watcher.exception() is not None:
            print(f"(no live progress: websocket failed: {watcher.exception()})", file=stderr)
            watcher = None
    except ImportError:
        print("(no live progress: aiohttp is not installed; polling /history)", file=stderr)
    status, body = await asyncio.to_thread(client.post_json, "/prompt", {"prompt": prompt,
                                                                         "client_id": client.client_id})
    if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        if watcher is not None:
            watcher.cancel()
        raise RunnerError(EXIT_REJECTED, "ComfyUI rejected the prompt:\n" + format_node_errors(prompt, body))
    box["id"] = body["prompt_id"]
    print(f"queued prompt {box['id']}", file=stderr)
    if watcher is None:
        return "no-ws", {"prompt_id": box["id"]}
    try:
        outcome, data = await watcher
    except Exception as e:  # noqa: BLE001  connection lost: fall back to polling
        print(f"(websocket lost: {e}; polling /history)", file=stderr)
        outcome, data = "closed", None
    return outcome, {**(data or {}), "prompt_id": box["id"]}


def main():
    sys.exit(run())


if __name__ == "__main__":
    main()
