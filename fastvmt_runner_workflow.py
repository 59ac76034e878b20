"""The workflow side of ``fastvmt_runner.py``: reading an API-format prompt (a file or a
shipped example by name) and applying the command line's overrides to it (reference video,
start image, motion file, prompts, seed, size, ``--set``), with the runner's exit codes and
its error type."""

from __future__ import annotations

import json
from pathlib import Path

from fastvmt_runner_watch import _sorted_ids
from fastvmt_selftest import _is_link

HERE = Path(__file__).resolve().parent
EXAMPLES_API_DIR = HERE / "example_workflows" / "api"

EXIT_OK, EXIT_USAGE, EXIT_SERVER, EXIT_MISSING, EXIT_REJECTED, EXIT_FAILED, EXIT_TIMEOUT = 0, 2, 3, 4, 5, 6, 7

SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "FastVMTGuidanceSampler"}


class RunnerError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def load_workflow(arg: str) -> dict:
    path = Path(arg)
    if not path.is_file():
        for cand in (EXAMPLES_API_DIR / f"{arg}.api.json", EXAMPLES_API_DIR / arg):
            if cand.is_file():
                path = cand
                break
        else:
            names = sorted(p.name[:-len(".api.json")] for p in EXAMPLES_API_DIR.glob("*.api.json"))
            raise RunnerError(EXIT_USAGE, f"workflow {arg!r}: no such file, and not a shipped example "
                                          f"({', '.join(names) or 'none found'})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunnerError(EXIT_USAGE, f"workflow {path}: cannot read it as JSON ({e})") from None
    if isinstance(data, dict) and "prompt" in data and isinstance(data["prompt"], dict):
        data = data["prompt"]
    if not isinstance(data, dict) or "nodes" in data or not all(
            isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise RunnerError(EXIT_USAGE, f"workflow {path}: not an API-format prompt (a UI workflow? use the "
                                      "'.api.json' file, or the frontend's Workflow > Export (API))")
    return data


def text_sources(prompt: dict, sampler_input: str) -> list[str]:
    """Ids of the nodes with a ``text`` widget that feed a sampler's ``sampler_input``."""
    found = []
    for nid in _sorted_ids(prompt):
        node = prompt[nid]
        if node["class_type"] not in SAMPLER_TYPES:
            continue
        ref = node["inputs"].get(sampler_input)
        if _is_link(ref) and ref[0] in prompt and "text" in prompt[ref[0]]["inputs"] \
                and not _is_link(prompt[ref[0]]["inputs"]["text"]) and ref[0] not in found:
            found.append(ref[0])
    return sorted(found, key=lambda k: (0, int(k)) if k.isdigit() else (1, k))


def _set_all(prompt: dict, key: str, value, class_types=None) -> int:
    n = 0
    for node in prompt.values():
        if class_types is not None and node["class_type"] not in class_types:
            continue
        if key in node["inputs"] and not _is_link(node["inputs"][key]):
            node["inputs"][key] = value
            n += 1
    return n


def _set_texts(prompt: dict, ids: list[str], texts: list[str], what: str):
    if not ids:
        raise RunnerError(EXIT_USAGE, f"--{what}: the workflow has no text node feeding a sampler's '{what}' input")
    if len(texts) == 1:
        texts = texts * len(ids)
    if len(texts) != len(ids):
        raise RunnerError(EXIT_USAGE, f"--{what} given {len(texts)} times but the workflow has {len(ids)} "
                                      f"{what if what == 'negative' else 'positive'} prompt nodes (ids {', '.join(ids)}): give it once or {len(ids)} times")
    for nid, text in zip(ids, texts):
        prompt[nid]["inputs"]["text"] = text


def apply_overrides(prompt: dict, args, uploaded: dict) -> list[str]:
    """Apply the command-line overrides in place; returns a human-readable list of changes."""
    changes = []

    def need(count, flag):
        if count == 0:
            raise RunnerError(EXIT_USAGE, f"{flag}: no node in this workflow takes it")

    if args.video is not None:
        n = _set_all(prompt, "file", uploaded.get("video", args.video), {"LoadVideo"})
        need(n, "--video")
        changes.append(f"reference video: {uploaded.get('video', args.video)}")
    if getattr(args, "image", None) is not None:
        n = _set_all(prompt, "image", uploaded.get("image", args.image), {"LoadImage"})
        need(n, "--image")
        changes.append(f"start image: {uploaded.get('image', args.image)}")
    if args.motion is not None:
        n = _set_all(prompt, "motion_file", uploaded.get("motion", args.motion), {"FastVMTLoadMotion"})
        need(n, "--motion")
        changes.append(f"motion file: {uploaded.get('motion', args.motion)}")
    if args.prompt:
        _set_texts(prompt, text_sources(prompt, "positive"), args.prompt, "prompt")
        changes.append(f"prompt: {args.prompt if len(args.prompt) > 1 else args.prompt[0]!r}")
    if args.negative:
        _set_texts(prompt, text_sources(prompt, "negative"), args.negative, "negative")
        changes.append("negative prompt set")
    for flag, keys, value, types in (("--seed", ("seed", "noise_seed"), args.seed, SAMPLER_TYPES),
                                     ("--steps", ("steps",), args.steps, SAMPLER_TYPES),
                                     ("--width", ("width",), args.width, None),
                                     ("--height", ("height",), args.height, None),
                                     ("--frames", ("length",), args.frames, None),
                                     ("--output-prefix", ("filename_prefix",), args.output_prefix, {"SaveVideo"})):
        if value is None:
            continue
        n = sum(_set_all(prompt, key, value, types) for key in keys)
        need(n, flag)
        changes.append(f"{keys[0]} = {value} ({n} node{'s' if n > 1 else ''})")
    if args.output_prefix is not None and len([1 for v in prompt.values() if v["class_type"] == "SaveVideo"]) > 1:
        # several outputs: keep them apart
        for i, nid in enumerate(nid for nid in _sorted_ids(prompt) if prompt[nid]["class_type"] == "SaveVideo"):
            prompt[nid]["inputs"]["filename_prefix"] = f"{args.output_prefix}_{'abcdefghijklmnopqrstuvwxyz'[i % 26]}"
    for kv in args.set or ():
        _set_raw(prompt, kv)
        changes.append(f"set {kv}")
    return changes


def _set_raw(prompt: dict, kv: str):
    """--set NODE.INPUT=VALUE (NODE: id or exact title; VALUE parsed as JSON when it parses)."""
    try:
        target, raw = kv.split("=", 1)
        node_ref, key = target.rsplit(".", 1)
    except ValueError:
        raise RunnerError(EXIT_USAGE, f"--set {kv!r}: expected NODE.INPUT=VALUE") from None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    ids = [node_ref] if node_ref in prompt else [
        nid for nid, n in prompt.items() if n.get("_meta", {}).get("title") == node_ref]
    if not ids:
        raise RunnerError(EXIT_USAGE, f"--set {kv!r}: no node with id or title {node_ref!r}")
    for nid in ids:
        prompt[nid]["inputs"][key] = value
