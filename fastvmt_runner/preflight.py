"""Checks on the server before anything is uploaded or queued: every node type installed,
every model file the loaders name in its ``models/`` folders, every input file the
workflow names (and is not about to be uploaded) in its input folder."""
from __future__ import annotations

import urllib.parse
from typing import Optional

import requests

from .client import EXIT_MISSING, Client, RunnerError
from .workflow import FILE_FLAGS, FileArgs, no_such_file, sorted_node_ids

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


def node_infos(client: Client, prompt: dict) -> dict:
    """``/object_info`` of each node type of ``prompt``; the runner's error naming those the
    server does not know."""
    missing, infos = [], {}
    for ct in sorted({n["class_type"] for n in prompt.values()}):
        info = client.get_json(f"/object_info/{urllib.parse.quote(ct)}")
        if ct not in info:
            missing.append(ct)
        else:
            infos[ct] = info[ct]
    if missing:
        hint = " (the FastVMT nodes: is the pack in ComfyUI/custom_nodes and did it load? see ComfyUI's log)" \
            if any(t.startswith("FastVMT") for t in missing) else ""
        raise RunnerError(EXIT_MISSING, f"ComfyUI does not know the node type(s) {', '.join(missing)}{hint}")
    return infos


def check_model_files(client: Client, prompt: dict) -> None:
    """Every model file a loader names is in the server's models/ folder for it (a folder the
    server does not list is not checked)."""
    lists, missing = {}, []
    for nid in sorted_node_ids(prompt):
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


def check_input_files(prompt: dict, infos: dict, files: FileArgs) -> None:
    """Every input file the prompt names is one the server lists, except those the runner
    uploads; a path-like value it lacks was meant as a local file."""
    flag_of = {class_type: flag for flag, (class_type, _, _) in FILE_FLAGS.items()}
    for nid in sorted_node_ids(prompt):
        node = prompt[nid]
        flag = flag_of.get(node["class_type"])
        key = FILE_FLAGS[flag][1] if flag else None
        name = node["inputs"].get(key) if key else None
        if not isinstance(name, str) or flag in files.uploads:
            continue
        options = combo_options(infos.get(node["class_type"], {}), key)
        if options is None or name in options:
            continue
        if flag in files.folder_names:
            raise no_such_file(flag, name, " (nor is it a file in ComfyUI's input folder)")
        raise RunnerError(EXIT_MISSING, f"input file {name!r} (node {nid} {node['class_type']}, input '{key}') "
                                        f"is not in ComfyUI's input folder: pass a local file with --{flag} "
                                        "to upload it")


def preflight(client: Client, prompt: dict, files: FileArgs) -> None:
    """Node types, model files and input files of ``prompt`` (overrides applied, uploads not
    yet made: ``files`` says which inputs the runner uploads)."""
    infos = node_infos(client, prompt)
    check_model_files(client, prompt)
    check_input_files(prompt, infos, files)
