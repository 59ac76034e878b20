"""Node schemas: the part of ComfyUI's ``/object_info`` the workflows use, snapshotted in
``schemas/node_schemas.json`` so the builder runs without ComfyUI."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

WORKFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = WORKFLOW_DIR.parent
SCHEMA_FILE = WORKFLOW_DIR / "schemas" / "node_schemas.json"
PACK_CNR_ID = "comfyui-fastvmt"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# Every node type the workflows use; their schemas are snapshotted by --update-schemas.
NODE_TYPES = (
    "UNETLoader", "CLIPLoader", "VAELoader", "CLIPTextEncode", "LoadVideo", "GetVideoComponents",
    "EmptyHunyuanLatentVideo", "KSampler", "KSamplerAdvanced", "ModelSamplingSD3", "VAEDecode", "CreateVideo",
    "SaveVideo", "LoadImage", "CLIPVisionLoader", "CLIPVisionEncode", "WanImageToVideo", "Wan22ImageToVideoLatent",
    "FastVMTExtractMotion", "FastVMTStepSkipSettings", "FastVMTGuidanceSampler", "FastVMTApplyMotion",
    "FastVMTSaveMotion", "FastVMTLoadMotion", "FastVMTMotionFidelity", "ImageFromBatch",
    "ImageStitch", "WanContextWindowsManual",
)
# Frontend-only node types (never sent to the server).
VIRTUAL_TYPES = {"Note", "MarkdownNote"}
# The value the frontend keeps in widgets_values for an image / video upload button.
UPLOAD_WIDGET_VALUE = "image"


def _input_entry(section: str, name: str, spec) -> dict:
    typ = "COMBO" if isinstance(spec[0], list) else spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    entry = {"name": name, "type": typ}
    if section == "optional":
        entry["optional"] = True
    if typ in WIDGET_TYPES and not opts.get("forceInput"):
        entry["widget"] = True
        if "default" in opts:
            entry["default"] = opts["default"]
        if opts.get("control_after_generate"):
            entry["control_after_generate"] = True
        if opts.get("image_upload") or opts.get("video_upload"):
            entry["upload"] = True
    return entry


def schema_snapshot(object_info: dict, types=NODE_TYPES) -> dict:
    """The part of an ``/object_info`` answer the builder reads, for ``types``: display
    name, inputs in ``input_order`` (socket or widget, optional, widget default,
    control_after_generate, upload button) and outputs. Combo options are left out (file
    lists differ from machine to machine); tests/test_workflows.py checks values against
    the live options."""
    missing = [t for t in types if t not in object_info]
    if missing:
        raise KeyError(f"node types not in /object_info: {', '.join(missing)} (is the FastVMT pack loaded?)")
    out = {}
    for t in types:
        info = object_info[t]
        inputs = [_input_entry(section, name, info["input"][section][name])
                  for section in ("required", "optional") for name in info.get("input_order", {}).get(section, [])]
        out[t] = {
            "display_name": info.get("display_name") or t,
            "inputs": inputs,
            "outputs": [{"name": n, "type": ty} for n, ty in zip(info.get("output_name") or info["output"],
                                                                  info["output"])],
        }
    return out


def live_object_info(server: Optional[str] = None) -> dict:
    """``/object_info`` of a running server (``server``: host:port), else of a ComfyUI
    booted in this process with the pack loaded (comfy_host; needs ComfyUI and torch)."""
    if server:
        import urllib.request
        url = server if server.startswith("http") else f"http://{server}"
        with urllib.request.urlopen(f"{url.rstrip('/')}/object_info", timeout=60) as r:
            return json.loads(r.read())
    if str(REPO_ROOT) not in sys.path:  # build.py runs as a script from example_workflows/
        sys.path.insert(0, str(REPO_ROOT))
    import comfy_host
    host = comfy_host.bootstrap()
    host.require_pack()
    return host.object_info()


@dataclass(frozen=True)
class Input:
    name: str
    type: str
    optional: bool = False
    widget: bool = False
    has_default: bool = False
    default: object = None
    control: bool = False
    upload: bool = False


@dataclass(frozen=True)
class Spec:
    type: str
    display: str
    inputs: tuple
    outputs: tuple   # (name, type)

    @property
    def core(self) -> bool:
        return not self.type.startswith("FastVMT")

    @property
    def sockets(self):
        return [i for i in self.inputs if not i.widget]

    @property
    def widgets(self):
        return [i for i in self.inputs if i.widget]

    def input(self, name: str) -> Input:
        for i in self.inputs:
            if i.name == name:
                return i
        raise KeyError(f"{self.type} has no input {name!r}")

    def widget_rows(self):
        """The frontend's widget rows in order: (input name or None, kind); a seed's
        control_after_generate and an upload button take a row of their own."""
        rows = []
        for w in self.widgets:
            rows.append((w.name, "value"))
            if w.control:
                rows.append((w.name, "control"))
        if any(w.upload for w in self.widgets):
            rows.append((None, "upload"))
        return rows


def load_specs(path: Path = SCHEMA_FILE) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run python example_workflows/build.py --update-schemas")
    data = json.loads(path.read_text(encoding="utf-8"))
    specs = {}
    for t, d in data.items():
        inputs = tuple(Input(i["name"], i["type"], i.get("optional", False), i.get("widget", False),
                             "default" in i, i.get("default"), i.get("control_after_generate", False),
                             i.get("upload", False)) for i in d["inputs"])
        specs[t] = Spec(t, d["display_name"], inputs, tuple((o["name"], o["type"]) for o in d["outputs"]))
    return specs


# One dict for the whole builder (updated in place, never rebound): empty until --update-schemas.
SPECS = load_specs() if SCHEMA_FILE.is_file() else {}


def reload_specs() -> None:
    SPECS.clear()
    SPECS.update(load_specs())


def update_snapshot(server: Optional[str] = None) -> bool:
    """Rewrites the snapshot from a live ComfyUI; True when it changed."""
    text = json.dumps(schema_snapshot(live_object_info(server)), indent=2, ensure_ascii=False) + "\n"
    SCHEMA_FILE.parent.mkdir(exist_ok=True)
    changed = not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text(encoding="utf-8") != text
    if changed:
        SCHEMA_FILE.write_text(text, encoding="utf-8")
    reload_specs()
    return changed


def check_schemas(server: Optional[str] = None) -> list:
    """Differences between schemas/node_schemas.json and the live /object_info."""
    live = schema_snapshot(live_object_info(server))
    saved = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return [f"node schema changed: {t}" for t in sorted(set(live) | set(saved)) if live.get(t) != saved.get(t)]
