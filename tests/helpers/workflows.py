"""The shipped example workflows (example_workflows/) for the tests: where they are, the
build.py / render_thumbnails.py scripts loaded as modules, and the UI workflow checks.

The checks are plain functions taking an /object_info lookup: test_workflows.py runs them
against the in-process ComfyUI, test_runner_host.py against a live server's ``/object_info``."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO / "example_workflows"
BUILD = WORKFLOW_DIR / "build.py"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
# combo inputs whose values are files a user provides (absent in a test ComfyUI)
USER_FILE_INPUTS = {("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"), ("VAELoader", "vae_name"),
                    ("CLIPVisionLoader", "clip_name"), ("LoadVideo", "file"), ("LoadImage", "image"),
                    ("FastVMTLoadMotion", "motion_file")}
VIRTUAL_TYPES = {"Note", "MarkdownNote"}


def load_example_module(filename: str):
    """A script of example_workflows/ (not a package) loaded as a module."""
    spec = importlib.util.spec_from_file_location(f"fastvmt_example_workflows_{Path(filename).stem}",
                                                  WORKFLOW_DIR / filename)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_builder():
    return load_example_module(BUILD.name)


def ui_files():
    return sorted(WORKFLOW_DIR.glob("*.json"))


def api_file_for(ui_path: Path) -> Path:
    return WORKFLOW_DIR / "api" / f"{ui_path.stem}.api.json"


# ---------------------------------------------------------------------------
# checks against an /object_info lookup (dict: node type -> info)
# ---------------------------------------------------------------------------

def _input_spec(info, name):
    for section in ("required", "optional"):
        spec = info.get("input", {}).get(section, {}).get(name)
        if spec is not None:
            return section, spec
    return None, None


def _opts(spec):
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_widget(spec):
    t = spec[0]
    if _opts(spec).get("forceInput"):
        return False
    return isinstance(t, list) or t in WIDGET_TYPES


def _combo_options(spec):
    if isinstance(spec[0], list):
        return spec[0]
    return _opts(spec).get("options")


def _socket_type(spec):
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def _types_match(a, b):
    if a == "*" or b == "*":
        return True
    return set(str(a).split(",")) & set(str(b).split(",")) != set()


def check_ui_workflow(ui: dict, object_info: dict, known_model_files=()) -> list[str]:
    """Problems of a UI workflow against /object_info (empty list: fine)."""
    problems = []
    nodes = {n["id"]: n for n in ui["nodes"]}
    for node in ui["nodes"]:
        t = node["type"]
        if t in VIRTUAL_TYPES:
            continue
        where = f"node {node['id']} {t}"
        if t not in object_info:
            problems.append(f"{where}: node type not in /object_info")
            continue
        info = object_info[t]
        # sockets
        ui_inputs = {i["name"]: i for i in node.get("inputs", [])}
        for name, inp in ui_inputs.items():
            section, spec = _input_spec(info, name)
            if spec is None:
                problems.append(f"{where}: input {name!r} not in /object_info")
                continue
            if not _types_match(inp["type"], _socket_type(spec)):
                problems.append(f"{where}: input {name!r} type {inp['type']} != {_socket_type(spec)}")
            if _is_widget(spec) and "widget" not in inp:
                problems.append(f"{where}: widget input {name!r} listed without 'widget'")
        for section in ("required", "optional"):
            for name in info.get("input_order", {}).get(section, []):
                spec = info["input"][section][name]
                if _is_widget(spec):
                    continue
                if name not in ui_inputs:
                    problems.append(f"{where}: socket {name!r} missing from the node's inputs")
                elif section == "required" and ui_inputs[name].get("link") is None:
                    problems.append(f"{where}: required input {name!r} is not connected")
        # outputs
        for slot, out in enumerate(node.get("outputs", [])):
            if slot >= len(info["output"]):
                problems.append(f"{where}: output slot {slot} does not exist")
            elif not _types_match(out["type"], info["output"][slot]):
                problems.append(f"{where}: output {slot} type {out['type']} != {info['output'][slot]}")
        if len(node.get("outputs", [])) != len(info["output"]):
            problems.append(f"{where}: {len(node.get('outputs', []))} outputs, /object_info has {len(info['output'])}")
        # widget values: one for every widget, in /object_info order (a missing one would be
        # filled in by the frontend with its default: a stale workflow)
        values = list(node.get("widgets_values", []))
        widgets = [(name, info["input"][section][name]) for section in ("required", "optional")
                   for name in info.get("input_order", {}).get(section, []) if _is_widget(info["input"][section][name])]
        upload = any(_opts(spec).get("image_upload") or _opts(spec).get("video_upload") for _, spec in widgets)
        expected = len(widgets) + sum(1 for _, spec in widgets if _opts(spec).get("control_after_generate")) + upload
        if len(values) != expected:
            problems.append(f"{where}: {len(values)} widget values, /object_info has {expected} widget rows")
        for name, spec in widgets:
            if not values:
                break
            v = values.pop(0)
            if _opts(spec).get("control_after_generate"):
                ctl = values.pop(0) if values else None
                if ctl not in CONTROL_VALUES:
                    problems.append(f"{where}: {name!r} control value {ctl!r}")
            problems += _check_value(where, t, name, spec, v, known_model_files)
    # links
    for lid, o, oslot, tgt, tslot, typ in ui["links"]:
        on, tn = nodes.get(o), nodes.get(tgt)
        if on is None or tn is None:
            problems.append(f"link {lid}: dangling ({o} -> {tgt})")
            continue
        out = on["outputs"][oslot]
        inp = tn["inputs"][tslot]
        if lid not in (out.get("links") or []) or inp.get("link") != lid:
            problems.append(f"link {lid}: not recorded on both ends")
        if not (out["type"] == typ and _types_match(inp["type"], typ)):
            problems.append(f"link {lid}: {on['type']}.{out['name']} ({out['type']}) -> {tn['type']}.{inp['name']} "
                            f"({inp['type']}) as {typ}")
        if on["type"] in object_info and tn["type"] in object_info:
            _, spec = _input_spec(object_info[tn["type"]], inp["name"])
            src_type = object_info[on["type"]]["output"][oslot]
            if spec is not None and not _types_match(src_type, _socket_type(spec)):
                problems.append(f"link {lid}: /object_info types {src_type} -> {_socket_type(spec)} do not match")
    ids = [lk[0] for lk in ui["links"]]
    if len(set(ids)) != len(ids) or ui.get("last_link_id", 0) < max(ids, default=0):
        problems.append("link ids not unique or last_link_id too small")
    if ui.get("last_node_id", 0) < max(nodes, default=0):
        problems.append("last_node_id too small")
    return problems


def _check_value(where, node_type, name, spec, v, known_model_files):
    t, opts = _socket_type(spec), _opts(spec)
    bad = lambda msg: [f"{where}: {name}={v!r}: {msg}"]  # noqa: E731
    if t == "INT":
        if not isinstance(v, int) or isinstance(v, bool):
            return bad("not an int")
    elif t == "FLOAT":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return bad("not a number")
    elif t == "STRING":
        return [] if isinstance(v, str) else bad("not a string")
    elif t == "BOOLEAN":
        return [] if isinstance(v, bool) else bad("not a boolean")
    elif t == "COMBO":
        options = _combo_options(spec)
        if (node_type, name) in USER_FILE_INPUTS:
            if name.endswith("_name") and known_model_files and v not in known_model_files:
                return bad("not one of the documented model files")
            return []
        return [] if options is not None and v in options else bad(f"not in the options {options}")
    if "min" in opts and v < opts["min"]:
        return bad(f"below min {opts['min']}")
    if "max" in opts and v > opts["max"]:
        return bad(f"above max {opts['max']}")
    return []
