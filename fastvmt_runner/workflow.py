"""The workflow side of the runner: reading an API-format prompt (a file, or a shipped
example by name), telling local files from names in ComfyUI's input folder, and applying
the command line's overrides (reference video, start image, motion file, prompts, seed,
steps, size, output prefix, ``--set``)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .client import EXIT_MISSING, EXIT_USAGE, RunnerError

PACK_DIR = Path(__file__).resolve().parent.parent
EXAMPLES_API_DIR = PACK_DIR / "example_workflows" / "api"

SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "FastVMTGuidanceSampler"}
# flag -> (node class it sets, the node's input, the input/ subfolder its upload goes to)
FILE_FLAGS = {
    "video": ("LoadVideo", "file", ""),
    "image": ("LoadImage", "image", ""),
    "motion": ("FastVMTLoadMotion", "motion_file", "fastvmt"),
}


def sorted_node_ids(ids) -> list[str]:
    """Node ids in numeric order, then the non-numeric ones by name."""
    return sorted(ids, key=lambda k: (0, int(k)) if k.isdigit() else (1, k))


def is_link(v) -> bool:
    """An input wired to another node's output: ``[node id, output index]``."""
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def load_workflow(arg: str) -> dict:
    """The API prompt in file ``arg``, or in the shipped example named ``arg``."""
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


# ---------------------------------------------------------------------------
# --video, --image, --motion: local files or names in ComfyUI's input folder
# ---------------------------------------------------------------------------

@dataclass
class FileArgs:
    """What the file flags name, by flag ("video", "image", "motion"): ``uploads``, local
    files (Path); ``names``, bare names of files in ComfyUI's input folder; ``folder_names``,
    relative paths with a folder and no local file, which are files in the input folder if
    the server lists them (e.g. fastvmt/motion_00001_.safetensors) and missing otherwise."""
    uploads: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    folder_names: dict = field(default_factory=dict)


def is_explicit_path(value: str) -> bool:
    """Starting with '.' or '~', or absolute: a path on this machine, never a name in
    ComfyUI's input folder."""
    return value.startswith((".", "~")) or os.path.isabs(value)


def looks_like_path(value: str) -> bool:
    """Typed as a path on this machine: explicitly, or with a folder separator. A bare name
    means a file in ComfyUI's input folder."""
    separators = {"/", os.sep, os.altsep} - {None}
    return is_explicit_path(value) or any(s in value for s in separators)


def no_such_file(flag: str, value: str, note: str = "") -> RunnerError:
    return RunnerError(EXIT_MISSING, f"--{flag}: no such file: {value}{note}")


def file_args(args) -> FileArgs:
    """Sort the file flags' values; a path that names no local file is an error here, except
    a relative one with a folder, which may still name a file in the server's input folder."""
    found = FileArgs()
    for flag in FILE_FLAGS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        local = Path(value).expanduser()
        if local.is_file():
            found.uploads[flag] = local
        elif not looks_like_path(value):
            found.names[flag] = value
        elif local.is_dir():
            raise no_such_file(flag, value, " (it is a folder)")
        elif is_explicit_path(value):
            raise no_such_file(flag, value)
        else:
            found.folder_names[flag] = value
    return found


# ---------------------------------------------------------------------------
# overrides
# ---------------------------------------------------------------------------

def check_size_flags(args) -> None:
    for flag in ("width", "height"):
        v = getattr(args, flag)
        if v is not None and (v < 16 or v % 16):
            raise RunnerError(EXIT_USAGE, f"--{flag} {v}: must be a multiple of 16 (Wan's VAE and patch size)")
    if args.frames is not None and (args.frames < 1 or (args.frames - 1) % 4):
        raise RunnerError(EXIT_USAGE, f"--frames {args.frames}: must be 4k+1 (1, 5, 9, ..., 81)")



def text_sources(prompt: dict, sampler_input: str) -> list[str]:
    """Ids of the nodes with a ``text`` widget that feed a sampler's ``sampler_input``."""
    found = []
    for nid in sorted_node_ids(prompt):
        node = prompt[nid]
        if node["class_type"] not in SAMPLER_TYPES:
            continue
        ref = node["inputs"].get(sampler_input)
        if is_link(ref) and ref[0] in prompt and "text" in prompt[ref[0]]["inputs"] \
                and not is_link(prompt[ref[0]]["inputs"]["text"]) and ref[0] not in found:
            found.append(ref[0])
    return sorted_node_ids(found)


def _set_all(prompt: dict, key: str, value, class_types=None) -> int:
    n = 0
    for node in prompt.values():
        if class_types is not None and node["class_type"] not in class_types:
            continue
        if key in node["inputs"] and not is_link(node["inputs"][key]):
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
                                      f"{what if what == 'negative' else 'positive'} prompt nodes (ids "
                                      f"{', '.join(ids)}): give it once or {len(ids)} times")
    for nid, text in zip(ids, texts):
        prompt[nid]["inputs"]["text"] = text


def _need(count: int, flag: str) -> None:
    if count == 0:
        raise RunnerError(EXIT_USAGE, f"{flag}: no node in this workflow takes it")


def _apply_files(prompt: dict, args, uploaded: dict) -> list[str]:
    changes = []
    for flag, what in (("video", "reference video"), ("image", "start image"), ("motion", "motion file")):
        value = getattr(args, flag, None)
        if value is None:
            continue
        class_type, key, _ = FILE_FLAGS[flag]
        name = uploaded.get(flag, value)
        _need(_set_all(prompt, key, name, {class_type}), f"--{flag}")
        changes.append(f"{what}: {name}")
    return changes


def apply_overrides(prompt: dict, args, uploaded: dict) -> list[str]:
    """Apply the command-line overrides in place (``uploaded``: flag -> the name an uploaded
    file got; other file values are set as given); returns a human-readable list of changes."""
    changes = _apply_files(prompt, args, uploaded)
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
        _need(n, flag)
        changes.append(f"{keys[0]} = {value} ({n} node{'s' if n > 1 else ''})")
    saves = [nid for nid in sorted_node_ids(prompt) if prompt[nid]["class_type"] == "SaveVideo"]
    if args.output_prefix is not None and len(saves) > 1:
        # several outputs: keep them apart
        for i, nid in enumerate(saves):
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
