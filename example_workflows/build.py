#!/usr/bin/env python3
"""Builds the example workflows from one Python description per graph.

Every workflow is written twice from the same description:

* ``<name>.json``          the frontend (UI) graph: drag it onto ComfyUI or open it from
                           the workflow templates browser (Workflow > Browse Templates >
                           the pack's folder name, e.g. ComfyUI-FastVMT).
* ``api/<name>.api.json``  the API format for ``POST /prompt`` and ``fastvmt_runner.py``.

Usage, from the repository root (standard library only, no ComfyUI needed)::

    python example_workflows/build.py                   # (re)write all files
    python example_workflows/build.py --check           # exit 1 if a committed file differs
    python example_workflows/build.py --check --live    # also: node schemas == a real ComfyUI's
    python example_workflows/build.py --update-schemas  # re-read the node schemas (needs ComfyUI)

Node inputs, widget order, widget defaults, output names and display names come from
``schemas/node_schemas.json``: the part of ComfyUI's ``/object_info`` the workflows use,
written by ``--update-schemas`` from a real ComfyUI with the pack loaded (in-process through
comfy_host.py, or ``--server HOST:PORT`` for a running server). Every widget of every node
gets a value in ``widgets_values`` (the one set here, else the schema's default), in the
schema's order, so the frontend never has to fill in missing ones. ``--live`` and
tests/test_workflows.py compare the snapshot with the live ``/object_info``: a node that
gains, loses or reorders an input fails there until the snapshot and the workflows are
rebuilt.

Why the folder is ``example_workflows/`` and the API files sit in ``api/``: ComfyUI
0.3.64 (app/custom_node_manager.py) serves a pack's ``example_workflows/`` (and, with
a log line suggesting the rename, ``workflows/``, ``examples/``, ...) under
``/api/workflow_templates/<pack>/`` and lists ``<pack>/<folder>/*.json`` in the
template browser. A second name (copy or symlink) would list every workflow twice, and
API files (or any other JSON) next to the UI files would show up as broken templates;
``api/`` and ``schemas/`` are served but not listed.

Template browser (frontend 1.27.10, ``useWorkflowTemplatesStore``): a custom-node template
is only its file name; the card's title is the name, its description the name with ``_``
turned into spaces, and its thumbnail ``<name>.jpg`` next to the JSON. So each workflow's
title and one-line description (``extra.fastvmt``) are drawn into that thumbnail by
``render_thumbnails.py``.

Layout rules checked here for every workflow (``check_layout``), and again in the real
frontend by tests/test_browser_workflows.py: no node (title bar included, and the room a
node may grow into, see ``Node.reserve``) overlaps another, groups do not overlap, links run
behind at most ``Graph.max_crossings`` nodes that are not their ends, and the saved view
(``extra.ds``) shows the whole graph in a 1600 x 1000 browser window.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

HERE = Path(__file__).resolve().parent
API_DIR = HERE / "api"
SCHEMA_FILE = HERE / "schemas" / "node_schemas.json"
PACK_CNR_ID = "comfyui-fastvmt"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# Every node type the workflows use; their schemas are snapshotted by --update-schemas.
NODE_TYPES = (
    "UNETLoader", "CLIPLoader", "VAELoader", "CLIPTextEncode", "LoadVideo", "GetVideoComponents",
    "EmptyHunyuanLatentVideo", "KSampler", "KSamplerAdvanced", "ModelSamplingSD3", "VAEDecode", "CreateVideo",
    "SaveVideo", "LoadImage", "CLIPVisionLoader", "CLIPVisionEncode", "WanImageToVideo", "Wan22ImageToVideoLatent",
    "FastVMTExtractMotion", "FastVMTStepSkipSettings", "FastVMTGuidanceSampler", "FastVMTApplyMotion",
    "FastVMTSaveMotion", "FastVMTLoadMotion",
)
# Frontend-only node types (never sent to the server).
VIRTUAL_TYPES = {"Note", "MarkdownNote"}
# The value the frontend keeps in widgets_values for an image / video upload button.
UPLOAD_WIDGET_VALUE = "image"


# ---------------------------------------------------------------------------
# node schemas (a snapshot of /object_info)
# ---------------------------------------------------------------------------

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
        inputs = []
        for section in ("required", "optional"):
            for name in info.get("input_order", {}).get(section, []):
                spec = info["input"][section][name]
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
                inputs.append(entry)
        out[t] = {
            "display_name": info.get("display_name") or t,
            "inputs": inputs,
            "outputs": [{"name": n, "type": ty} for n, ty in zip(info.get("output_name") or info["output"],
                                                                  info["output"])],
        }
    return out


def live_object_info(server: Optional[str] = None) -> dict:
    """``/object_info`` of a running server (``server``: host:port), else of a ComfyUI
    booted in this process with the pack loaded (comfy_host.py; needs ComfyUI and torch)."""
    if server:
        import urllib.request
        url = server if server.startswith("http") else f"http://{server}"
        with urllib.request.urlopen(f"{url.rstrip('/')}/object_info", timeout=60) as r:
            return json.loads(r.read())
    sys.path.insert(0, str(HERE.parent))
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


SPECS = load_specs() if SCHEMA_FILE.is_file() else {}  # empty until --update-schemas


HF = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
WAN_T2V_13B = "wan2.1_t2v_1.3B_fp16.safetensors"
UMT5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
HF22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
WAN22_T2V_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_T2V_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
WAN22_I2V_HIGH = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_I2V_LOW = "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
WAN22_TI2V_5B = "wan2.2_ti2v_5B_fp16.safetensors"
WAN22_VAE = "wan2.2_vae.safetensors"
WAN21_I2V_480P = "wan2.1_i2v_480p_14B_fp16.safetensors"
CLIP_VISION_H = "clip_vision_h.safetensors"
MODEL_FILES = {  # name -> (models/ folder, download url); shown by the frontend's missing-models dialog
    WAN_T2V_13B: ("diffusion_models", f"{HF}/diffusion_models/{WAN_T2V_13B}"),
    UMT5: ("text_encoders", f"{HF}/text_encoders/{UMT5}"),
    WAN_VAE: ("vae", f"{HF}/vae/{WAN_VAE}"),
    WAN22_T2V_HIGH: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_T2V_HIGH}"),
    WAN22_T2V_LOW: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_T2V_LOW}"),
    WAN22_I2V_HIGH: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_I2V_HIGH}"),
    WAN22_I2V_LOW: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_I2V_LOW}"),
    WAN22_TI2V_5B: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_TI2V_5B}"),
    WAN22_VAE: ("vae", f"{HF22}/vae/{WAN22_VAE}"),
    WAN21_I2V_480P: ("diffusion_models", f"{HF}/diffusion_models/{WAN21_I2V_480P}"),
    CLIP_VISION_H: ("clip_vision", f"{HF}/clip_vision/{CLIP_VISION_H}"),
}

NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
            "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
            "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
REFERENCE_VIDEO = "reference.mp4"
START_IMAGE = "start_image.png"
SIZE = dict(width=832, height=480, length=81)

NOTE_COLOR = ("#432", "#653")
PROMPT_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")

# --- geometry of LiteGraph as ComfyUI's frontend 1.27 draws it (measured there; the
# browser test compares every slot position with the frontend's getInputPos/getOutputPos)
TITLE = 30          # title bar height, drawn above pos
SLOT = 20           # socket row height
WIDGET_ROW = 24     # widget row height
SLOT_Y0 = 14        # first socket's centre below pos
SLOT_X_IN = 10      # input socket centre right of pos[0]
SLOT_X_OUT = -9     # output socket centre left of the right edge
GAP = 40            # vertical gap between stacked nodes (between one's bottom and the next one's title)

# Load Video's preview: the frontend sizes it to the node's width at the clip's aspect
# ratio (fitDimensionsToNodeWidth) and grows the node to fit; 74 px are its other rows.
VIDEO_W = 320
VIDEO_ROWS = 74
PORTRAIT = 16 / 9   # the tallest clip the layout leaves room for (9:16 portrait)
VIDEO_RESERVE = math.ceil(VIDEO_ROWS + VIDEO_W * PORTRAIT)

# The pack's web extension (web/js/fastvmt.js) shows a run summary in a box under these
# nodes after a run, growing them by up to 16 text rows (14 px each, plus margins).
SUMMARY_NODES = {"FastVMTExtractMotion", "FastVMTGuidanceSampler", "FastVMTLoadMotion", "FastVMTSaveMotion"}
SUMMARY_ROOM = 16 * 14 + 12 + 20

# --- the first view: a 1600 x 1000 window, ComfyUI 0.3.64 / frontend 1.27.10 defaults.
# The canvas starts below the top bar (78 px) and right of the side bar (64 px); the
# minimap (bottom right) and the canvas info text (bottom left) stay clear of the graph.
WINDOW = (1600, 1000)
CANVAS_ORIGIN = (64, 78)
VIEW_MARGIN = 16
VIEW_REGIONS = (               # window rectangles (x0, y0, x1, y1) the graph may fill
    (CANVAS_ORIGIN[0] + VIEW_MARGIN, CANVAS_ORIGIN[1] + VIEW_MARGIN, WINDOW[0] - VIEW_MARGIN, 734 - VIEW_MARGIN),
    (CANVAS_ORIGIN[0] + VIEW_MARGIN, CANVAS_ORIGIN[1] + VIEW_MARGIN, 1306 - VIEW_MARGIN, 915 - VIEW_MARGIN),
)
MAX_VIEW_SCALE = 1.0


# ---------------------------------------------------------------------------
# graph description
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Out:
    node: "Node"
    slot: int


@dataclass(eq=False)
class Node:
    id: int
    type: str
    pos: tuple
    size: tuple
    title: Optional[str] = None
    values: dict = field(default_factory=dict)   # widget name -> value
    links: dict = field(default_factory=dict)    # input name -> Out
    color: Optional[tuple] = None
    reserve: Optional[int] = None                # height the node may grow to in the frontend

    def out(self, which: Union[int, str] = 0) -> Out:
        if isinstance(which, str):
            names = [n for n, _ in SPECS[self.type].outputs]
            which = names.index(which)
        return Out(self, which)

    @property
    def height(self) -> float:
        """Height the layout keeps for the node (its size, or the room it may grow to)."""
        return max(self.size[1], self.reserve or 0)

    def rect(self) -> list:
        """[x, y, w, h] including the title bar and the reserved growth."""
        return [self.pos[0], self.pos[1] - TITLE, self.size[0], self.height + TITLE]


@dataclass
class Group:
    title: str
    nodes: list
    color: str


class Graph:
    def __init__(self, name: str, title: str, description: str, max_crossings: int = 0):
        self.name = name
        self.title = title              # drawn on the template thumbnail
        self.description = description  # one line, drawn on the template thumbnail
        self.max_crossings = max_crossings  # link-behind-node budget (check_layout)
        self.nodes: list[Node] = []
        self.groups: list[Group] = []

    def add(self, type_: str, pos=(0, 0), *, title=None, size=None, color=None, reserve=None, **kw) -> Node:
        spec = SPECS.get(type_)
        if spec is None:
            raise KeyError(f"no schema for {type_}: add it to NODE_TYPES and run build.py --update-schemas")
        values, links = {}, {}
        for k, v in kw.items():
            inp = spec.input(k)
            if isinstance(v, Node):
                v = v.out(0)
            if isinstance(v, Out):
                links[k] = v
            elif not inp.widget:
                raise KeyError(f"{type_}: socket {k!r} takes a link, not {v!r}")
            else:
                values[k] = v
        for inp in spec.inputs:
            if inp.widget and inp.name not in values and inp.name not in links and not inp.has_default:
                raise KeyError(f"{type_}: widget {inp.name!r} has no default: give it a value")
            if not inp.widget and not inp.optional and inp.name not in links:
                raise KeyError(f"{type_}: input {inp.name!r} must be connected")
        if reserve is None and type_ in SUMMARY_NODES:
            reserve = default_size(spec)[1] + SUMMARY_ROOM
        node = Node(len(self.nodes) + 1, type_, tuple(pos), tuple(size or default_size(spec)), title, values, links,
                    color, reserve)
        self.nodes.append(node)
        return node

    def note(self, text: str, pos=(0, 0), size=(380, 160), title="Note") -> Node:
        node = Node(len(self.nodes) + 1, "Note", tuple(pos), tuple(size), title, {"text": text}, {}, NOTE_COLOR)
        self.nodes.append(node)
        return node

    def group(self, title: str, nodes, color="#3f789e"):
        self.groups.append(Group(title, list(nodes), color))


def default_size(spec: Spec):
    """A node's size: at least what the frontend computes for it (computeSize)."""
    rows = max(len(spec.sockets), len(spec.outputs))
    return (320, SLOT * rows + WIDGET_ROW * len(spec.widget_rows()) + 24)


def column(x, y, *nodes, gap=GAP):
    """Stacks ``nodes`` top-down at ``x`` from ``y`` (``y``: the first one's pos, below its
    title bar); returns the y below the last one."""
    for n in nodes:
        n.pos = (x, y)
        y += n.height + gap + TITLE
    return y - gap - TITLE


# ---------------------------------------------------------------------------
# the workflows
# ---------------------------------------------------------------------------
# Layout: nodes stand in columns, and a link joins neighbouring columns wherever it can
# (it then runs through the empty space between them, not behind other nodes); a link
# that has to pass a column runs along a row that column leaves free. Loaders and other
# nodes without inputs stand next to the nodes they feed; notes stand where no link runs.
# Room is left under Load Video for a portrait clip's preview and under the nodes with
# a run summary for its box (Node.reserve).

POSITIVE = ("A red fox runs across a snowy meadow toward the camera, its breath visible in the cold air, "
            "soft morning light, cinematic, highly detailed.")
I2V_POSITIVE = ("The subject in the image moves naturally through the scene, following the motion of the "
                "reference clip, soft natural light, cinematic, highly detailed.")

MODELS_COLOR = "#3f789e"
REFERENCE_COLOR = "#8A8"
PROMPTS_COLOR = "#88A"
OUTPUT_COLOR = "#a1309b"


def _models_note(title: str, files, extra: str = "") -> str:
    lines = [f"Models ({title}):"] + [f"- models/{MODEL_FILES[f][0]}/{f}{extra if i == 0 else ''}"
                                      for i, f in enumerate(files)]
    return ("\n".join(lines) + "\n\nA file ComfyUI cannot find is listed when the workflow opens "
            "('Missing Models', with a download button: the links are stored in the workflow). After adding "
            "files, press R to refresh the loaders' lists.")


NOTE_REFERENCE = (
    "Reference video: upload your clip in 'Reference Video' (any length; the first 81 frames are used, "
    "resized and centre-cropped).\n\n"
    "Size: 'Extract Motion' width / height / length must equal the empty latent's width / height / length "
    "(change both together). 832x480x81 is Wan 2.1's native 480p. Smaller sizes (e.g. 480x272, 33 frames) "
    "run much faster.\n\n"
    "motion_block 14 suits the 30-block 1.3B; the 14B has 40 blocks (try 20).")

NOTE_SAMPLER = (
    "Prompt: describe the NEW subject and scene; the motion comes from the reference.\n\n"
    "Step-Skip Settings are the paper's defaults (effi_AMF, interval 3, 10 inner steps, first 20% of the "
    "50 steps guided). The node is optional. mode 'No_transfer' gives plain Wan text-to-video for comparison.\n\n"
    "The output fps follows the reference video's fps (linked from Get Video Components).")


def _video(g: Graph):
    return g.add("LoadVideo", title="Reference Video", size=(VIDEO_W, 400), reserve=VIDEO_RESERVE,
                 file=REFERENCE_VIDEO)


def _extract(g: Graph, unet, comps, vae, ref_prompt, motion_block=14, size=None, clip_vision=None):
    size = SIZE if size is None else size
    extra = {} if clip_vision is None else {"clip_vision": clip_vision}
    return g.add("FastVMTExtractMotion", model=unet, images=comps.out("images"), vae=vae, conditioning=ref_prompt,
                 motion_block=motion_block, **size, **extra)


def _prompt(g: Graph, clip, text, title="Positive Prompt", size=(420, 180)):
    return g.add("CLIPTextEncode", title=title, size=size, color=PROMPT_COLOR, clip=clip, text=text)


def _negative(g: Graph, clip, size=(420, 180)):
    return g.add("CLIPTextEncode", title="Negative Prompt", size=size, color=NEGATIVE_COLOR, clip=clip, text=NEGATIVE)


def _output(g: Graph, latent, vae, fps, prefix):
    decode = g.add("VAEDecode", samples=latent, vae=vae)
    create = g.add("CreateVideo", images=decode, fps=fps)
    save = g.add("SaveVideo", size=(480, 420), video=create, filename_prefix=prefix, format="auto", codec="auto")
    return decode, create, save


# Single-run text-to-video workflows. Columns, left to right (top rows; bottom rows):
#   A  Load CLIP, Models note;                        Load Video
#   B  the model (loader, or its shift), prompts,     reference prompt, VAE, Get Video
#      empty latent;                                  Components
#   C  Step-Skip Settings;                            Extract Motion
#   D  the sampler(s), guidance note;                 reference note
#   E  VAE Decode, Create Video    F  Save Video      (bottom rows)
# The model reaches the sampler along the top edge, the VAE and the reference fps reach
# the output below Extract Motion; everything else joins neighbouring columns.
XA, XB, XC, XD = 0, 440, 980, 1440
XE = XD + 340 + 160
XF = XE + 320 + 60


def _transfer_inputs(g: Graph, unet_name=WAN_T2V_13B, shift=None, motion_block=14) -> dict:
    """Loaders, reference motion, prompts, empty latent and Step-Skip Settings of the
    single-run text-to-video workflows (created in this order, so node ids stay stable)."""
    loader = g.add("UNETLoader", unet_name=unet_name, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", vae_name=WAN_VAE)
    unet = loader
    if shift is not None:
        unet = g.add("ModelSamplingSD3", size=(420, 60), model=loader, shift=shift)
    video = _video(g)
    comps = g.add("GetVideoComponents", video=video)
    ref_prompt = g.add("CLIPTextEncode", title="Reference Prompt (empty)", size=(420, 100), clip=clip, text="")
    extract = _extract(g, unet, comps, vae, ref_prompt, motion_block)
    pos = _prompt(g, clip, POSITIVE)
    neg = _negative(g, clip)
    latent = g.add("EmptyHunyuanLatentVideo", title="Empty Wan Latent Video", batch_size=1, **SIZE)
    settings = g.add("FastVMTStepSkipSettings")
    n = dict(loader=loader, unet=unet, clip=clip, vae=vae, video=video, comps=comps, ref_prompt=ref_prompt,
             extract=extract, pos=pos, neg=neg, latent=latent, settings=settings)
    return n


def _transfer_layout(n: dict, top: int = 0):
    """Places the nodes of _transfer_inputs. ``top``: the y of the model node (more model
    rows may stand above it); the guidance nodes stand in column D from ``top``."""
    if n["unet"] is n["loader"]:
        n["loader"].size = (420, n["loader"].size[1])
        column(XB, top, n["loader"])
    else:
        column(XA, top, n["loader"])
        column(XB, top, n["unet"])
    y = column(XB, top + 180, n["pos"], n["neg"], n["latent"])
    column(XA, n["pos"].pos[1] + 60, n["clip"])
    y = column(XC, y - 100, n["settings"]) + 100 + TITLE
    column(XC, y, n["extract"])
    column(XB, y + 60, n["ref_prompt"])
    column(XA, y, n["video"])
    column(XB, n["extract"].pos[1] + n["extract"].height + 40, n["vae"], n["comps"])


def _transfer_output(g: Graph, n: dict, latent, prefix, fps=None):
    out = _output(g, latent, n["vae"], n["comps"].out("fps") if fps is None else fps, prefix)
    decode, create, save = out
    column(XE, n["vae"].pos[1] - SLOT, decode)
    column(XE, n["comps"].pos[1] - 2, create)
    column(XF, decode.pos[1], save)
    return out


def _transfer_notes_and_groups(g: Graph, n: dict, guidance: list, out, note: str, note_h=320,
                               note_at=None) -> None:
    n1 = g.note(_models_note("Comfy-Org's repackaged Wan 2.1", [WAN_T2V_13B, UMT5, WAN_VAE], " (or the 14B)"),
                size=(320, 250), title="Models")
    n2 = g.note(NOTE_REFERENCE, size=(340, 330), title="Reference video and size")
    n3 = g.note(note, size=(340 if note_at is None else 420, note_h), title="Prompt and guidance")
    column(XA, n["clip"].pos[1] + n["clip"].height + GAP + TITLE, n1)
    column(*(note_at or (XD, guidance[-1].pos[1] + guidance[-1].height + GAP + TITLE)), n3)
    column(XD, n["extract"].pos[1], n2)
    models = [n["loader"], n["clip"]] + ([n["unet"]] if n["unet"] is not n["loader"] else [])
    g.group("Models, prompts and size", [*models, *n.get("more_models", ()), n["pos"], n["neg"], n["latent"], n1],
            MODELS_COLOR)
    g.group("Guidance", [n["settings"], *guidance, n3], PROMPTS_COLOR)
    g.group("Reference motion", [n["video"], n["comps"], n["ref_prompt"], n["vae"], n["extract"], n2],
            REFERENCE_COLOR)
    g.group("Output", list(out), OUTPUT_COLOR)


def wf_guidance_sampler() -> Graph:
    g = Graph("fastvmt_wan21_t2v_motion_transfer", "Motion transfer: Wan 2.1 1.3B",
              "A reference clip's motion in a new text-to-video, with the FastVMT Guidance Sampler.")
    n = _transfer_inputs(g)
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=n["unet"], positive=n["pos"],
                    negative=n["neg"], latent_image=n["latent"], motion=n["extract"], settings=n["settings"],
                    seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    _transfer_layout(n)
    column(XD, 0, sampler)
    out = _transfer_output(g, n, sampler, "video/fastvmt")
    _transfer_notes_and_groups(g, n, [sampler], out, NOTE_SAMPLER)
    return g


def wf_apply_motion() -> Graph:
    g = Graph("fastvmt_wan21_t2v_apply_motion_ksampler", "Motion transfer: stock KSampler",
              "Apply FastVMT Motion patches the model; the stock KSampler then transfers the motion "
              "(Wan 2.1 1.3B).")
    n = _transfer_inputs(g)
    apply = g.add("FastVMTApplyMotion", size=(340, 110), model=n["unet"], motion=n["extract"],
                  settings=n["settings"])
    sampler = g.add("KSampler", size=(340, 300), model=apply, positive=n["pos"], negative=n["neg"],
                    latent_image=n["latent"], seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple",
                    denoise=1.0)
    _transfer_layout(n)
    column(XD, 0, apply, sampler)
    out = _transfer_output(g, n, sampler, "video/fastvmt_ksampler")
    note = ("Apply FastVMT Motion returns a patched copy of the model; any stock sampler that takes a MODEL "
            "(KSampler, KSamplerAdvanced, SamplerCustomAdvanced) then transfers the motion. Same result as the "
            "FastVMT Guidance Sampler for the same inputs.\n\n" + NOTE_SAMPLER)
    _transfer_notes_and_groups(g, n, [apply, sampler], out, note, 420)
    return g


NOTE_EXTRACT = (
    "Step 1 of 2: extract the motion once.\n\nThe file lands in output/fastvmt/motion_00001_.safetensors. "
    "Copy it into input/fastvmt/ (or upload it with fastvmt_runner.py --motion) and open "
    "'fastvmt_wan21_t2v_reuse_saved_motion' to generate as many videos from it as you like, without "
    "re-encoding the reference.\n\n"
    "Reference video: upload your clip in 'Reference Video' (any length; the first 81 frames are used, "
    "resized and centre-cropped).\n\n"
    "Size: a motion keeps the width / height / length it was extracted at, and the videos made from it have "
    "that size (832x480x81 here: Wan 2.1's native 480p). Smaller sizes (e.g. 480x272, 33 frames) run much "
    "faster.\n\n"
    "motion_block 14 suits the 30-block 1.3B; the 14B has 40 blocks (try 20).")


def wf_extract_save() -> Graph:
    g = Graph("fastvmt_wan21_t2v_extract_and_save_motion", "Save a motion (step 1 of 2)",
              "Extract a reference clip's motion once and save it as a file, to reuse with any prompt.")
    unet = g.add("UNETLoader", size=(420, 110), unet_name=WAN_T2V_13B, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", size=(420, 86), vae_name=WAN_VAE)
    video = _video(g)
    comps = g.add("GetVideoComponents", size=(420, 106), video=video)
    ref_prompt = g.add("CLIPTextEncode", title="Reference Prompt (empty)", size=(420, 100), clip=clip, text="")
    extract = _extract(g, unet, comps, vae, ref_prompt)
    save = g.add("FastVMTSaveMotion", size=(340, 90), motion=extract, filename_prefix="fastvmt/motion")
    note = g.note(NOTE_EXTRACT, size=(400, 500), title="Save once, reuse")
    models_note = g.note(_models_note("Comfy-Org's repackaged Wan 2.1", [WAN_T2V_13B, UMT5, WAN_VAE],
                                      " (or the 14B)"), size=(320, 250), title="Models")
    column(XA, 0, models_note)
    column(XB, 0, unet)
    column(XB, 400, ref_prompt, vae, comps)
    column(XA, 400, clip, video)
    column(XC, 400, extract)
    column(XD, 400, save, note)
    g.group("Models", [unet, models_note], MODELS_COLOR)
    g.group("Extract and save", [clip, video, comps, ref_prompt, vae, extract, save, note], REFERENCE_COLOR)
    return g


REUSE_PROMPTS = [
    ("Prompt A", POSITIVE),
    ("Prompt B", "An astronaut in a white spacesuit runs across the dusty surface of the moon, earth in the "
                 "black sky, cinematic lighting."),
    ("Prompt C", "A golden retriever runs along a sandy beach at sunset, waves in the background, "
                 "warm light, shallow depth of field."),
]

NOTE_REUSE = (
    "Step 2 of 2: one saved motion, several prompts.\n\nPut the file saved by "
    "'fastvmt_wan21_t2v_extract_and_save_motion' into input/fastvmt/ and pick it in 'Load Motion' "
    "(press R to refresh the list). The motion keeps its size: the empty latent's width / height / length "
    "must equal the ones it was extracted at (832x480x81 here).\n\nEach branch is one video; delete or "
    "bypass (Ctrl+B) branches you do not need, or copy one to add prompts. Videos are written at Wan's "
    "16 fps.")


def wf_reuse() -> Graph:
    g = Graph("fastvmt_wan21_t2v_reuse_saved_motion", "Reuse a saved motion (step 2 of 2)",
              "One saved motion, three prompts, three videos: no reference clip to encode.")
    unet = g.add("UNETLoader", size=(420, 110), unet_name=WAN_T2V_13B, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", size=(340, 86), vae_name=WAN_VAE)
    motion = g.add("FastVMTLoadMotion", size=(420, 90), motion_file="fastvmt/motion_00001_.safetensors")
    settings = g.add("FastVMTStepSkipSettings", size=(420, 348))
    neg = _negative(g, clip, size=(420, 140))
    latent = g.add("EmptyHunyuanLatentVideo", title="Empty Wan Latent Video", size=(420, 130), batch_size=1,
                   **SIZE)
    xb, xc = XB, XB + 420 + 160
    xd = xc + 340 + 180  # room for the VAE's link past the samplers' summary boxes
    y = column(xb, 0, unet, motion, settings) + 120
    y = column(xb, y, latent, neg) + GAP + 60
    chains, y_s = [], 0
    for i, (title, text) in enumerate(REUSE_PROMPTS):
        pos = _prompt(g, clip, text, title, size=(420, 140))
        sampler = g.add("FastVMTGuidanceSampler", size=(340, 320), model=unet, positive=pos, negative=neg,
                        latent_image=latent, motion=motion, settings=settings, seed=42, steps=50, cfg=6.0,
                        sampler_name="euler", scheduler="simple", denoise=1.0)
        out = _output(g, sampler, vae, 16.0, f"video/fastvmt_{'abc'[i]}")
        y = column(xb, y, pos) + GAP + TITLE
        column(xc, y_s, sampler)
        decode, create, save = out
        column(xd, y_s, decode, create)
        column(xd + 360, y_s, save)
        y_s = max(save.pos[1] + save.height, sampler.pos[1] + sampler.height) + 100
        chains.append([pos, sampler, *out])
    column(xc, chains[-1][1].pos[1] + chains[-1][1].height + GAP + TITLE, vae)
    n = g.note(NOTE_REUSE, size=(320, 420), title="Reuse a saved motion")
    column(XA, 0, n)
    column(XA, (neg.pos[1] + chains[-1][0].pos[1]) // 2, clip)
    g.group("Models and saved motion", [unet, motion, settings, n], MODELS_COLOR)
    g.group("Prompts and size", [clip, latent, neg] + [c[0] for c in chains], PROMPTS_COLOR)
    g.group("Sampling", [c[1] for c in chains] + [vae], REFERENCE_COLOR)
    for i, chain in enumerate(chains):
        g.group(f"Video {'ABC'[i]}", chain[2:], OUTPUT_COLOR)
    return g


def wf_uni_pc() -> Graph:
    g = Graph("fastvmt_wan21_t2v_uni_pc", "Motion transfer: uni_pc, 30 steps",
              "The sampler settings of ComfyUI's Wan 2.1 text-to-video template (uni_pc, 30 steps, shift 8).")
    n = _transfer_inputs(g, shift=8.0)
    n["more_models"] = [n["unet"]]
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=n["unet"], positive=n["pos"],
                    negative=n["neg"], latent_image=n["latent"], motion=n["extract"], settings=n["settings"],
                    seed=42, steps=30, cfg=6.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    _transfer_layout(n)
    column(XD, 0, sampler)
    out = _transfer_output(g, n, sampler, "video/fastvmt_uni_pc")
    note = ("The sampler settings of ComfyUI's own Wan 2.1 text-to-video template: uni_pc / simple, 30 steps, "
            "cfg 6, shift 8. The first 20% of the process (6 of 30 steps) is guided; UniPC cannot take one step "
            "on its own, so those 6 steps are Euler steps (the first-order step of the same family for a flow "
            "model) and UniPC takes over from step 7.\n\n" + NOTE_SAMPLER.split("\n\n", 1)[0])
    _transfer_notes_and_groups(g, n, [sampler], out, note)
    return g


NOTE_TWO_EXPERTS = (
    "Wan 2.2 14B uses two experts: the high-noise model denoises steps 0-10 of 20, the low-noise model "
    "steps 10-20 (the split of ComfyUI's template, cfg 3.5, shift 5). The motion is applied to both. "
    "FastVMT guides the first 20% of the WHOLE schedule, so steps 1-4 are guided, all by the high-noise "
    "expert; the low-noise expert's call lies outside the guided range and runs plain (its summary in the "
    "log says so). Connecting it to the low-noise expert too is harmless and keeps the recipe the same for "
    "other splits.\n\n"
    "4-step lightx2v LoRA: add 'LoraLoaderModelOnly' with wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise / "
    "_low_noise after each loader, then steps 4, cfg 1, split 0-2 / 2-4. Step 1 (sigma 1.0) is guided; the "
    "reference is re-noised to at most sigma 0.8 (Step-Skip Settings reference_sigma_cap), so it still "
    "carries its motion.\n\n"
    "motion_block 20 is the middle of the 14B's 40 blocks.")


def wf_two_experts() -> Graph:
    g = Graph("fastvmt_wan22_t2v_14b_two_experts", "Motion transfer: Wan 2.2 14B, two experts",
              "High- and low-noise experts in two KSamplerAdvanced, the motion applied to both (Wan 2.2 T2V).")
    n = _transfer_inputs(g, unet_name=WAN22_T2V_HIGH, shift=5.0, motion_block=20)
    n["loader"].title, n["unet"].title = "Load Diffusion Model (high noise)", "Shift (high noise)"
    low_loader = g.add("UNETLoader", title="Load Diffusion Model (low noise)", unet_name=WAN22_T2V_LOW,
                       weight_dtype="default")
    low = g.add("ModelSamplingSD3", size=(420, 60), title="Shift (low noise)", model=low_loader, shift=5.0)
    n["more_models"] = [low_loader, low]
    apply_high = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (high noise)",
                       model=n["unet"], motion=n["extract"], settings=n["settings"])
    apply_low = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (low noise)", model=low,
                      motion=n["extract"], settings=n["settings"])
    first = g.add("KSamplerAdvanced", size=(340, 368), title="KSampler (high noise, steps 0-10)",
                  model=apply_high, positive=n["pos"], negative=n["neg"], latent_image=n["latent"],
                  add_noise="enable", noise_seed=42, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                  start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    second = g.add("KSamplerAdvanced", size=(340, 368), title="KSampler (low noise, steps 10-20)",
                   model=apply_low, positive=n["pos"], negative=n["neg"], latent_image=first,
                   add_noise="disable", noise_seed=0, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                   start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    _transfer_layout(n, top=150)
    column(XA, 0, low_loader)
    column(XB, 0, low)
    n["loader"].pos = (XA, 150)
    column(XD, 0, apply_low, apply_high)
    column(XE, 300, first, second)
    out = _transfer_output(g, n, second, "video/fastvmt_wan22")
    _transfer_notes_and_groups(g, n, [apply_high, apply_low, first, second], out, NOTE_TWO_EXPERTS, 620,
                               note_at=(XF, 0))
    return g



# ---------------------------------------------------------------------------
# image-to-video
# ---------------------------------------------------------------------------
# Same columns as the text-to-video workflows; the VAE and the model reach column D and
# the output along the top edge, the start image joins column C's latent node.

def _i2v_note(needs: str, latent_node: str, size_line: str) -> str:
    return (
        "Image-to-video: the video starts from 'Start Image'. Extract Motion conditions the reference pass the "
        "same way, on the reference clip's own first frame, as the generation is conditioned on the start "
        f"image. {needs}\n\n"
        "For best results the start image should resemble the reference's first frame in layout: the subject "
        "in the same place, at a similar size and from a similar viewpoint.\n\n"
        "Reference video: upload your clip in 'Reference Video' (the first 'length' frames are used, resized "
        "and centre-cropped).\n\n"
        f"Size: 'Extract Motion' width / height / length must equal {latent_node}'s (change both together). "
        + size_line)


NOTE_STEP_SKIP = ("Step-Skip Settings are the paper's defaults (effi_AMF, interval 3, 10 inner steps, the first "
                  "20% of the steps guided). The node is optional. mode 'No_transfer' gives plain image-to-video "
                  "for comparison.")


def _fps_note(fps: int, template: str) -> str:
    return (f"Videos are written at {fps} fps, as in ComfyUI's {template} template; connect Get Video "
            "Components' fps to Create Video's fps to play at the reference clip's speed instead.")


def _i2v_inputs(g: Graph, *, unet_names: list, vae_name: str, shift: float, size: dict, motion_block: int,
                clip_vision: bool = False, latent_type: str = "WanImageToVideo") -> dict:
    """Loaders, start image, reference motion, prompts, the generation latent and Step-Skip
    Settings of the image-to-video workflows (created in this order, so node ids stay
    stable). ``unet_names``: one model, or the high- and low-noise experts (the motion is
    extracted with the first)."""
    two = len(unet_names) == 2
    expert = (" (high noise)", " (low noise)") if two else ("",)
    loaders, shifted = [], []
    for i, name in enumerate(unet_names):
        loaders.append(g.add("UNETLoader", title=f"Load Diffusion Model{expert[i]}" if two else None,
                             unet_name=name, weight_dtype="default"))
        shifted.append(g.add("ModelSamplingSD3", size=(420, 60), title=f"Shift{expert[i]}" if two else None,
                             model=loaders[i], shift=shift))
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", size=(420, 86), vae_name=vae_name)
    models = [*loaders, *shifted, clip, vae]
    vision = None
    if clip_vision:
        vision = g.add("CLIPVisionLoader", clip_name=CLIP_VISION_H)
        models.append(vision)
    image = g.add("LoadImage", title="Start Image", size=(420 if not clip_vision else 320, 360), image=START_IMAGE)
    start = [image]
    vision_out = None
    if clip_vision:
        vision_out = g.add("CLIPVisionEncode", size=(340, 110), title="CLIP Vision Encode (start image)",
                           clip_vision=vision, image=image.out("IMAGE"), crop="none")
        start.append(vision_out)
    video = _video(g)
    comps = g.add("GetVideoComponents", size=(420, 106), video=video)
    ref_prompt = g.add("CLIPTextEncode", title="Reference Prompt (empty)", size=(420, 100), clip=clip, text="")
    extract = _extract(g, shifted[0], comps, vae, ref_prompt, motion_block, size, vision)
    pos = _prompt(g, clip, I2V_POSITIVE)
    neg = _negative(g, clip)
    if latent_type == "WanImageToVideo":
        latent = g.add("WanImageToVideo", size=(340, 250), positive=pos, negative=neg, vae=vae,
                       **({"clip_vision_output": vision_out} if clip_vision else {}), start_image=image.out("IMAGE"),
                       batch_size=1, **size)
        positive, negative, latent_out = latent.out("positive"), latent.out("negative"), latent.out("latent")
    else:
        latent = g.add("Wan22ImageToVideoLatent", size=(340, 180), vae=vae, start_image=image.out("IMAGE"),
                       batch_size=1, **size)
        positive, negative, latent_out = pos.out(0), neg.out(0), latent.out(0)
    settings = g.add("FastVMTStepSkipSettings", size=(340, 348))
    n = dict(models=models, loaders=loaders, unets=shifted, clip=clip, vae=vae, vision=vision, image=image,
             vision_out=vision_out, start=start, video=video, comps=comps, extract=extract, ref_prompt=ref_prompt,
             pos=pos, neg=neg, latent=latent, positive=positive, negative=negative, latent_out=latent_out,
             settings=settings)
    # layout. A: loaders, CLIP, notes, Load Video; B: VAE, the shifted model(s), prompts,
    # CLIP vision loader, start image, reference prompt, Get Video Components;
    # C: CLIP Vision Encode, the latent node, Step-Skip Settings, Extract Motion
    rows = len(unet_names)
    column(XB, 0, vae)
    for i in range(rows):
        column(XA, 130 * (i + 1), loaders[rows - 1 - i])
        column(XB, 130 * (i + 1), shifted[rows - 1 - i])
    y = column(XB, 130 * rows + 180, pos, neg)
    column(XA, neg.pos[1], clip)
    if clip_vision:
        y = column(XB, y + GAP + TITLE, vision, image)
        column(XC, vision.pos[1], vision_out, latent)
    else:
        y = column(XB, y + GAP + TITLE, image)
        column(XC, neg.pos[1] + 200 if latent_type != "WanImageToVideo" else neg.pos[1] - 40, latent)
    y_c = column(XC, latent.pos[1] + latent.height + GAP + TITLE, settings) + 100 + TITLE
    column(XC, max(y_c, y + 100 + TITLE), extract)
    column(XB, extract.pos[1] + 60, ref_prompt, comps)
    column(XA, extract.pos[1], video)
    return n


def _i2v_output(g: Graph, n: dict, latent, fps, prefix, x=XE):
    out = _output(g, latent, n["vae"], fps, prefix)
    decode, create, save = out
    column(x, -SLOT, decode, create)
    column(x + 320 + 60, -SLOT, save)
    return out


def _i2v_notes_and_groups(g: Graph, n: dict, models_note: str, i2v_note: str, guidance: list, out, note: str,
                          note_h, note_at=None) -> None:
    n1 = g.note(models_note, size=(320, 300), title="Models")
    n2 = g.note(i2v_note, size=(340, 560), title="Start image, reference video and size")
    n3 = g.note(note, size=(340, note_h), title="Prompt and guidance")
    column(XA, n["clip"].pos[1] + n["clip"].height + GAP + TITLE, n1)
    column(XD, n["extract"].pos[1], n2)
    last = guidance[-1]
    column(*(note_at or (last.pos[0], last.pos[1] + last.height + GAP + TITLE)), n3)
    g.group("Models, prompts and start image", [*n["models"], n["image"], n["pos"], n["neg"], n1], MODELS_COLOR)
    g.group("Guidance", [n["latent"], n["settings"], *guidance] + ([n3] if note_at is None else [])
            + ([n["vision_out"]] if n["vision_out"] else []), PROMPTS_COLOR)
    g.group("Reference motion", [n["video"], n["comps"], n["ref_prompt"], n["extract"], n2], REFERENCE_COLOR)
    g.group("Output", list(out), OUTPUT_COLOR)


I2V_14B_SIZE = dict(width=640, height=640, length=81)

NOTE_I2V_TWO_EXPERTS = (
    "Prompt: describe the video that starts from the start image; the motion comes from the reference.\n\n"
    "Wan 2.2 14B I2V uses two experts: the high-noise model denoises steps 0-10 of 20, the low-noise model "
    "steps 10-20 (the split of ComfyUI's template: euler / simple, cfg 3.5, shift 8). The motion is applied to "
    "both. FastVMT guides the first 20% of the WHOLE schedule, so steps 1-4 are guided, all by the high-noise "
    "expert; the low-noise expert's call lies outside the guided range and runs plain (its summary in the log "
    "says so). Connecting it to the low-noise expert too keeps the recipe the same for other splits.\n\n"
    "4-step lightx2v LoRA (the template's second variant): add 'LoraLoaderModelOnly' with "
    "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise / _low_noise after each loader, then shift 5, steps 4, "
    "cfg 1, split 0-2 / 2-4 (step 1 is guided).\n\n"
    "motion_block 20 is the middle of the 14B's 40 blocks. " + NOTE_STEP_SKIP + "\n\n"
    + _fps_note(16, "Wan 2.2 14B image-to-video"))


def wf_i2v_two_experts() -> Graph:
    g = Graph("fastvmt_wan22_i2v_14b_two_experts", "Image to video: Wan 2.2 14B, two experts",
              "A start image moved by the reference clip's motion; high- and low-noise experts in two "
              "KSamplerAdvanced.")
    n = _i2v_inputs(g, unet_names=[WAN22_I2V_HIGH, WAN22_I2V_LOW], vae_name=WAN_VAE, shift=8.0,
                    size=I2V_14B_SIZE, motion_block=20)
    high, low = n["unets"]
    apply_high = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (high noise)", model=high,
                       motion=n["extract"], settings=n["settings"])
    apply_low = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (low noise)", model=low,
                      motion=n["extract"], settings=n["settings"])
    first = g.add("KSamplerAdvanced", size=(340, 368), title="KSampler (high noise, steps 0-10)",
                  model=apply_high, positive=n["positive"], negative=n["negative"], latent_image=n["latent_out"],
                  add_noise="enable", noise_seed=42, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                  start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    second = g.add("KSamplerAdvanced", size=(340, 368), title="KSampler (low noise, steps 10-20)",
                   model=apply_low, positive=n["positive"], negative=n["negative"], latent_image=first,
                   add_noise="disable", noise_seed=0, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                   start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    column(XD, 130, apply_low, apply_high)
    column(XE, 560, first, second)
    out = _i2v_output(g, n, second, 16.0, "video/fastvmt_wan22_i2v", x=XE + 340 + 160)
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.2", [WAN22_I2V_HIGH, WAN22_I2V_LOW, UMT5, WAN_VAE]),
        _i2v_note("It needs the reference frames ('images') and the VAE; its model is the high-noise expert, "
                  "the one that runs the guided steps.", "WanImageToVideo",
                  "640x640x81 is the size of ComfyUI's template; Wan 2.2 14B also does 1280x720 (more memory "
                  "and time)."),
        [apply_high, apply_low, first, second], out, NOTE_I2V_TWO_EXPERTS, 680,
        note_at=(out[1].pos[0], out[1].pos[1] + out[1].height + 100 + TITLE))
    return g


def _i2v_guidance_sampler(g: Graph, n: dict, cfg: float) -> Node:
    """The Guidance Sampler of the single-model image-to-video workflows: the sampler
    settings of ComfyUI's templates (uni_pc / simple, 20 steps), in the guidance column."""
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=n["unets"][0],
                    positive=n["positive"], negative=n["negative"], latent_image=n["latent_out"], motion=n["extract"],
                    settings=n["settings"], seed=42, steps=20, cfg=cfg, sampler_name="uni_pc", scheduler="simple",
                    denoise=1.0)
    column(XD, 130, sampler)
    return sampler


TI2V_5B_SIZE = dict(width=1280, height=704, length=121)

def _i2v_uni_pc_note(template: str, cfg: int, fps: int, block_line: str) -> str:
    """Note of a single-model image-to-video workflow on the uni_pc settings of ComfyUI's ``template``."""
    return ("Prompt: describe the video that starts from the start image; the motion comes from the reference.\n\n"
            f"The sampler settings of ComfyUI's {template} template: uni_pc / simple, 20 steps, cfg {cfg}, shift 8. "
            "The first 20% of the process (4 of 20 steps) is guided; UniPC cannot take one step on its own, so "
            "those 4 steps are Euler steps and UniPC takes over from step 5.\n\n"
            + block_line + " " + NOTE_STEP_SKIP + "\n\n" + _fps_note(fps, template))


NOTE_TI2V_5B = _i2v_uni_pc_note("Wan 2.2 5B", 5, 24, "motion_block 14 is the paper's block for a 30-block model, as "
                                "the 5B is.")


def wf_ti2v_5b() -> Graph:
    g = Graph("fastvmt_wan22_ti2v_5b", "Image to video: Wan 2.2 TI2V 5B",
              "A start image moved by the reference clip's motion, 1280x704 at 24 fps (Wan22ImageToVideoLatent).")
    n = _i2v_inputs(g, unet_names=[WAN22_TI2V_5B], vae_name=WAN22_VAE, shift=8.0, size=TI2V_5B_SIZE,
                    motion_block=14, latent_type="Wan22ImageToVideoLatent")
    sampler = _i2v_guidance_sampler(g, n, cfg=5.0)
    out = _i2v_output(g, n, sampler, 24.0, "video/fastvmt_wan22_5b")
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.2", [WAN22_TI2V_5B, UMT5, WAN22_VAE]),
        _i2v_note("The 5B keeps the start image in the latent itself (Wan22ImageToVideoLatent's noise mask), so "
                  "Extract Motion needs only the reference frames ('images') and the Wan 2.2 VAE.",
                  "Wan22ImageToVideoLatent",
                  "1280x704x121 at 24 fps is the 5B's native 720p (the template's size); sizes are multiples of "
                  "32. Smaller sizes (e.g. 640x352, 49 frames) run much faster."),
        [sampler], out, NOTE_TI2V_5B, 500)
    return g


I2V_21_SIZE = dict(width=512, height=512, length=33)

NOTE_I2V_21 = _i2v_uni_pc_note("Wan 2.1 image-to-video", 6, 16, "motion_block 20 is the middle of the 14B's 40 "
                               "blocks.")


def wf_i2v_wan21() -> Graph:
    g = Graph("fastvmt_wan21_i2v_480p", "Image to video: Wan 2.1 I2V 480p",
              "A start image moved by the reference clip's motion, with CLIP vision and WanImageToVideo.")
    n = _i2v_inputs(g, unet_names=[WAN21_I2V_480P], vae_name=WAN_VAE, shift=8.0, size=I2V_21_SIZE,
                    motion_block=20, clip_vision=True)
    sampler = _i2v_guidance_sampler(g, n, cfg=6.0)
    out = _i2v_output(g, n, sampler, 16.0, "video/fastvmt_wan21_i2v")
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.1", [WAN21_I2V_480P, UMT5, WAN_VAE, CLIP_VISION_H]),
        _i2v_note("It needs the reference frames ('images'), the VAE and, for Wan 2.1's CLIP-vision image "
                  "branch, the CLIP vision model on 'clip_vision' (the same Load CLIP Vision that encodes the "
                  "start image).", "WanImageToVideo",
                  "512x512x33 is the size of ComfyUI's template; the 480p model's native size is 832x480x81 "
                  "(more memory and time)."),
        [sampler], out, NOTE_I2V_21, 500)
    return g


# --- motion controls: camera motion only (self-contained: the text-to-video helpers above) ---

NOTE_CAMERA_ONLY = (
    "Camera motion only: Step-Skip Settings 'transfer' is 'camera'. Per pair of frames FastVMT fits the "
    "reference's global motion (pan, tilt, zoom, roll: one affine motion of the frame, robust to what moves in "
    "front of it) and guides the new video's global motion to follow it. The new subject moves as the prompt "
    "says.\n\n"
    "Use a reference whose camera moves. On a still camera the summary warns and the new camera is held still. "
    "Parallax (near things passing faster) is not one global motion: that part is left free.\n\n"
    "motion_strength scales the camera motion; a reference_mask on the sampler chooses where the camera is read "
    "(e.g. the background).\n\n" + NOTE_SAMPLER.split("\n\n", 1)[0])


def wf_camera_only() -> Graph:
    g = Graph("fastvmt_wan21_t2v_camera_motion_only", "Camera motion only: Wan 2.1 1.3B",
              "The reference's camera motion (pan, zoom, roll) in a new video; its objects' motion is not copied.")
    n = _transfer_inputs(g)
    n["settings"].values["transfer"] = "camera"
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=n["unet"], positive=n["pos"],
                    negative=n["neg"], latent_image=n["latent"], motion=n["extract"], settings=n["settings"],
                    seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    _transfer_layout(n)
    column(XD, 0, sampler)
    out = _transfer_output(g, n, sampler, "video/fastvmt_camera")
    _transfer_notes_and_groups(g, n, [sampler], out, NOTE_CAMERA_ONLY, 440)
    return g


WORKFLOWS = [wf_guidance_sampler, wf_apply_motion, wf_extract_save, wf_reuse, wf_uni_pc, wf_two_experts,
             wf_i2v_two_experts, wf_ti2v_5b, wf_i2v_wan21, wf_camera_only]




# ---------------------------------------------------------------------------
# serialisation
# ---------------------------------------------------------------------------

def _topological_order(nodes):
    order, seen = [], set()

    def visit(n):
        if n.id in seen:
            return
        seen.add(n.id)
        for ref in n.links.values():
            visit(ref.node)
        order.append(n)

    for n in nodes:
        visit(n)
    return {n.id: i for i, n in enumerate(order)}


def widgets_values(n: Node) -> list:
    """Every widget row of the node, in the schema's order: the value set in the
    description, else the schema's default (also for a widget whose input is linked: the
    frontend keeps a value there)."""
    spec = SPECS[n.type]
    wv = []
    for name, kind in spec.widget_rows():
        if kind == "value":
            wv.append(n.values[name] if name in n.values else spec.input(name).default)
        elif kind == "control":
            wv.append("fixed")
        else:
            wv.append(UPLOAD_WIDGET_VALUE)
    return wv


def _group_bounding(grp: Group) -> list:
    x0 = min(n.pos[0] for n in grp.nodes) - 20
    y0 = min(n.pos[1] for n in grp.nodes) - TITLE - 30
    x1 = max(n.pos[0] + n.size[0] for n in grp.nodes) + 20
    y1 = max(n.pos[1] + n.height for n in grp.nodes) + 20
    return [x0, y0, x1 - x0, y1 - y0]


def to_ui(g: Graph) -> dict:
    links = []        # [id, origin, origin_slot, target, target_slot, type]
    out_links = {}    # (node id, slot) -> [link ids]
    node_inputs = {}
    for n in g.nodes:
        if n.type in VIRTUAL_TYPES:
            continue
        spec = SPECS[n.type]
        sockets, widget_inputs = [], []
        for inp in spec.inputs:
            ref = n.links.get(inp.name)
            if inp.widget and ref is None:
                continue
            entry = {"name": inp.name, "type": inp.type}
            if ref is not None:
                link_id = len(links) + 1
                origin_type = SPECS[ref.node.type].outputs[ref.slot][1]
                entry["link"] = link_id
                links.append([link_id, ref.node.id, ref.slot, n.id, None, origin_type])
                out_links.setdefault((ref.node.id, ref.slot), []).append(link_id)
            else:
                entry["link"] = None
            if inp.widget:
                entry["widget"] = {"name": inp.name}
                widget_inputs.append(entry)
            else:
                if inp.optional:
                    entry["shape"] = 7
                sockets.append(entry)
        ins = sockets + widget_inputs
        for slot, entry in enumerate(ins):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot
        node_inputs[n.id] = ins

    order = _topological_order(g.nodes)
    nodes = []
    for n in g.nodes:
        d = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {},
             "order": order[n.id], "mode": 0}
        if n.type in VIRTUAL_TYPES:
            d.update(inputs=[], outputs=[], title=n.title, properties={}, widgets_values=[n.values["text"]])
        else:
            spec = SPECS[n.type]
            d["inputs"] = node_inputs[n.id]
            d["outputs"] = [{"name": name, "type": typ, "links": out_links.get((n.id, i), []), "slot_index": i}
                            for i, (name, typ) in enumerate(spec.outputs)]
            if n.title:
                d["title"] = n.title
            props = {"cnr_id": "comfy-core" if spec.core else PACK_CNR_ID, "Node name for S&R": n.type}
            models = [{"name": v, "url": MODEL_FILES[v][1], "directory": MODEL_FILES[v][0]}
                      for v in n.values.values() if isinstance(v, str) and v in MODEL_FILES]
            if models:
                props["models"] = models
            d["properties"] = props
            d["widgets_values"] = widgets_values(n)
        if n.color:
            d["color"], d["bgcolor"] = n.color
        nodes.append(d)

    groups = [{"id": i, "title": grp.title, "bounding": _group_bounding(grp), "color": grp.color, "font_size": 24,
               "flags": {}} for i, grp in enumerate(g.groups, 1)]
    return {
        "id": _stable_uuid(g.name),
        "revision": 0,
        "last_node_id": len(g.nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": first_view(g), "fastvmt": {"title": g.title, "description": g.description}},
        "version": 0.4,
    }


def _stable_uuid(name: str) -> str:
    import uuid
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-fastvmt/example_workflows/{name}"))


def to_api(g: Graph) -> dict:
    prompt = {}
    for n in g.nodes:
        if n.type in VIRTUAL_TYPES:
            continue
        spec = SPECS[n.type]
        inputs = {}
        for inp in spec.inputs:
            if inp.name in n.links:
                ref = n.links[inp.name]
                inputs[inp.name] = [str(ref.node.id), ref.slot]
            elif inp.name in n.values:
                inputs[inp.name] = n.values[inp.name]
            elif inp.widget and inp.has_default:
                inputs[inp.name] = inp.default
        prompt[str(n.id)] = {"inputs": inputs, "class_type": n.type, "_meta": {"title": n.title or spec.display}}
    return prompt


# ---------------------------------------------------------------------------
# layout: geometry, checks and the first view
# ---------------------------------------------------------------------------

def slot_positions(n: Node) -> tuple[dict, list]:
    """Where the frontend draws the node's sockets: ({input name: (x, y)}, [output (x, y)])."""
    spec = SPECS[n.type]
    x, y = n.pos
    ins = {s.name: (x + SLOT_X_IN, y + SLOT_Y0 + SLOT * i) for i, s in enumerate(spec.sockets)}
    rows_top = y + SLOT_Y0 + SLOT * max(len(spec.sockets), len(spec.outputs)) + 2
    for k, (name, kind) in enumerate(spec.widget_rows()):
        if kind == "value":
            ins[name] = (x + SLOT_X_IN, rows_top + WIDGET_ROW * k)
    outs = [(x + n.size[0] + SLOT_X_OUT, y + SLOT_Y0 + SLOT * i) for i in range(len(spec.outputs))]
    return ins, outs


def link_geometry(g: Graph) -> list:
    """[(origin node id, target node id, start (x, y), end (x, y))] for every link."""
    out = []
    for n in g.nodes:
        ins, _ = slot_positions(n) if n.type not in VIRTUAL_TYPES else ({}, [])
        for name, ref in n.links.items():
            out.append((ref.node.id, n.id, slot_positions(ref.node)[1][ref.slot], ins[name]))
    return out


def link_curve(a, b, steps=100):
    """Points of the frontend's spline link from output ``a`` to input ``b`` (a cubic Bezier
    with horizontal control arms of a quarter of the distance: LinkConnectorRenderer)."""
    d = math.dist(a, b) * 0.25
    p = (a, (a[0] + d, a[1]), (b[0] - d, b[1]), b)
    pts = []
    for i in range(1, steps):
        t = i / steps
        u = 1 - t
        pts.append(tuple(u ** 3 * p[0][k] + 3 * u * u * t * p[1][k] + 3 * u * t * t * p[2][k] + t ** 3 * p[3][k]
                         for k in (0, 1)))
    return pts


def link_crossings(rects: dict, links) -> list:
    """[(origin id, target id, node id)]: a link drawn behind a node that is not one of its
    ends. ``rects``: node id -> [x, y, w, h] (title bar included); ``links``: as
    link_geometry."""
    hits = []
    for o, t, a, b in links:
        pts = link_curve(a, b)
        for nid, (x, y, w, h) in rects.items():
            if nid in (o, t):
                continue
            if any(x < px < x + w and y < py < y + h for px, py in pts):
                hits.append((o, t, nid))
    return hits


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def overlaps(rects: dict) -> list:
    """[(id, id)] of overlapping rectangles (``rects``: id -> [x, y, w, h])."""
    items = sorted(rects.items(), key=lambda kv: str(kv[0]))
    return [(ia, ib) for i, (ia, a) in enumerate(items) for ib, b in items[i + 1:] if _overlap(a, b)]


def check_layout(g: Graph, ui: dict):
    """Nodes (title bar and reserved growth included) do not overlap, groups do not
    overlap, links run behind at most ``g.max_crossings`` nodes that are not their ends,
    and the first view shows the whole graph."""
    titles = {n.id: n.title or SPECS.get(n.type, Spec(n.type, n.type, (), ())).display for n in g.nodes}
    bad = [f"nodes {titles[a]!r} and {titles[b]!r} overlap" for a, b in overlaps({n.id: n.rect() for n in g.nodes})]
    bad += [f"groups {a!r} and {b!r} overlap" for a, b in overlaps({gr["title"]: gr["bounding"] for gr in ui["groups"]})]
    hits = link_crossings({n.id: n.rect() for n in g.nodes}, link_geometry(g))
    if len(hits) > g.max_crossings:
        bad += [f"{len(hits)} links behind nodes (at most {g.max_crossings}): "
                + "; ".join(f"{titles[o]} -> {titles[t]} behind {titles[n]}" for o, t, n in hits)]
    x0, y0, x1, y1 = view_box(ui["extra"]["ds"], graph_bounds(g))
    if not any(rx0 <= x0 and ry0 <= y0 and x1 <= rx1 and y1 <= ry1 for rx0, ry0, rx1, ry1 in VIEW_REGIONS):
        bad.append(f"the first view does not show the whole graph: {[round(v) for v in (x0, y0, x1, y1)]}")
    if bad:
        raise ValueError("; ".join(bad))


def graph_bounds(g: Graph) -> tuple:
    """(x0, y0, x1, y1) of every node (title and reserve included) and group."""
    rects = [n.rect() for n in g.nodes] + [_group_bounding(grp) for grp in g.groups]
    return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[0] + r[2] for r in rects),
            max(r[1] + r[3] for r in rects))


def view_box(ds: dict, bounds) -> tuple:
    """Where ``bounds`` (graph coordinates) land in the browser window under view ``ds``."""
    s, (ox, oy) = ds["scale"], ds["offset"]
    x0, y0, x1, y1 = bounds
    return (CANVAS_ORIGIN[0] + (x0 + ox) * s, CANVAS_ORIGIN[1] + (y0 + oy) * s,
            CANVAS_ORIGIN[0] + (x1 + ox) * s, CANVAS_ORIGIN[1] + (y1 + oy) * s)


def first_view(g: Graph) -> dict:
    """extra.ds (scale, offset) that shows the whole graph, as large as it fits, centred in
    the best of VIEW_REGIONS of a 1600 x 1000 window."""
    x0, y0, x1, y1 = graph_bounds(g)
    w, h = x1 - x0, y1 - y0
    best = None
    for rx0, ry0, rx1, ry1 in VIEW_REGIONS:
        s = math.floor(min((rx1 - rx0) / w, (ry1 - ry0) / h, MAX_VIEW_SCALE) * 1000) / 1000
        if best is None or s > best[0]:
            best = (s, rx0, ry0, rx1, ry1)
    s, rx0, ry0, rx1, ry1 = best
    cx = (rx0 + rx1) / 2 - CANVAS_ORIGIN[0]
    cy = (ry0 + ry1) / 2 - CANVAS_ORIGIN[1]
    return {"scale": s, "offset": [round(cx / s - (x0 + x1) / 2, 1), round(cy / s - (y0 + y1) / 2, 1)]}


def thumbnail_key(ui: dict) -> str:
    """Digest of what a template thumbnail shows (title, description, nodes, links,
    groups): render_thumbnails.py writes it into the JPEG, tests/test_workflows.py fails
    when a thumbnail is older than its workflow."""
    shown = {
        "extra": ui["extra"].get("fastvmt"),
        "nodes": [[n["id"], n["type"], n.get("title"), n["pos"], n["size"]] for n in ui["nodes"]],
        "links": ui["links"],
        "groups": [[gr["title"], gr["bounding"]] for gr in ui["groups"]],
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def graphs() -> list:
    return [make() for make in WORKFLOWS]


def render_all() -> dict:
    """Relative path (from this folder) -> file text, for every workflow."""
    if not SPECS:
        raise SystemExit(f"{SCHEMA_FILE} is missing: run python example_workflows/build.py --update-schemas")
    files = {}
    for g in graphs():
        ui = to_ui(g)
        try:
            check_layout(g, ui)
        except ValueError as e:
            raise ValueError(f"{g.name}: {e}") from None
        files[f"{g.name}.json"] = dumps(ui)
        files[f"api/{g.name}.api.json"] = dumps(to_api(g))
    return files


def check_schemas(server: Optional[str] = None) -> list:
    """Differences between schemas/node_schemas.json and the live /object_info."""
    live = schema_snapshot(live_object_info(server))
    saved = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return [f"node schema changed: {t}" for t in sorted(set(live) | set(saved)) if live.get(t) != saved.get(t)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a committed file differs from what would be written")
    ap.add_argument("--live", action="store_true",
                    help="with --check: also compare schemas/node_schemas.json with a real ComfyUI's /object_info")
    ap.add_argument("--update-schemas", action="store_true",
                    help="rewrite schemas/node_schemas.json from a real ComfyUI with the pack, then build")
    ap.add_argument("--server", help="host:port of a running ComfyUI for --live / --update-schemas "
                                     "(default: boot ComfyUI in this process through comfy_host.py)")
    args = ap.parse_args(argv)
    if args.update_schemas:
        text = dumps(schema_snapshot(live_object_info(args.server)))
        SCHEMA_FILE.parent.mkdir(exist_ok=True)
        if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text(encoding="utf-8") != text:
            SCHEMA_FILE.write_text(text, encoding="utf-8")
            print(f"wrote {SCHEMA_FILE.relative_to(HERE).as_posix()}")
        global SPECS
        SPECS = load_specs()
    files = render_all()
    expected = set(files)
    present = {p.relative_to(HERE).as_posix() for p in list(HERE.glob("*.json")) + list(API_DIR.glob("*.json"))}
    if args.check:
        bad = []
        for rel, text in sorted(files.items()):
            path = HERE / rel
            if not path.is_file():
                bad.append(f"missing: {rel}")
            elif path.read_text(encoding="utf-8") != text:
                bad.append(f"differs: {rel}")
        bad += [f"not generated by build.py: {rel}" for rel in sorted(present - expected)]
        if args.live:
            bad += [f"{line} (run: python example_workflows/build.py --update-schemas)"
                    for line in check_schemas(args.server)]
        if bad:
            print("example workflows are out of date (run: python example_workflows/build.py):", file=sys.stderr)
            for line in bad:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"example workflows up to date ({len(files)} files" + (", node schemas live" if args.live else "")
              + ")")
        return 0
    API_DIR.mkdir(exist_ok=True)
    for rel, text in sorted(files.items()):
        path = HERE / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    for rel in sorted(present - expected):
        print(f"warning: {rel} is not generated by build.py (delete it if it is stale)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
