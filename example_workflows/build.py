#!/usr/bin/env python3
"""Builds the example workflows from one Python description per graph.

Every workflow is written twice from the same description:

* ``<name>.json``          the frontend (UI) graph: drag it onto ComfyUI or open it from
                           the workflow templates browser (Workflow > Browse Templates >
                           FastVMT pack).
* ``api/<name>.api.json``  the API format for ``POST /prompt`` and ``fastvmt_runner.py``.

Usage, from the repository root (standard library only, no ComfyUI needed)::

    python example_workflows/build.py           # (re)write all files
    python example_workflows/build.py --check   # exit 1 if a committed file differs

Why the folder is ``example_workflows/`` and the API files sit in ``api/``: ComfyUI
0.3.64 (app/custom_node_manager.py) serves a pack's ``example_workflows/`` (and, with
a log line suggesting the rename, ``workflows/``, ``examples/``, ...) under
``/api/workflow_templates/<pack>/`` and lists ``<pack>/<folder>/*.json`` in the
template browser. A second name (copy or symlink) would list every workflow twice, and
API files next to the UI files would show up as broken templates; ``api/`` is served
but not listed.

Node inputs, widget order and output types below follow ComfyUI's ``/object_info``
(checked by tests/test_workflows.py against a real ComfyUI with the pack loaded).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

HERE = Path(__file__).resolve().parent
API_DIR = HERE / "api"
PACK_CNR_ID = "comfyui-fastvmt"

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# ---------------------------------------------------------------------------
# Node specs: inputs in /object_info input_order, "name:TYPE" with suffixes
#   ?  optional input        +  widget with control_after_generate (seed)
# outputs as "name:TYPE"; ui_widgets are frontend-only widgets appended to
# widgets_values (not part of the API prompt).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    display: str
    inputs: str
    outputs: str
    ui_widgets: tuple = ()
    core: bool = True

    def parsed_inputs(self):
        out = []
        for tok in self.inputs.split():
            name, typ = tok.split(":")
            optional = typ.endswith("?")
            typ = typ.rstrip("?")
            control = typ.endswith("+")
            typ = typ.rstrip("+")
            out.append((name, typ, optional, control))
        return out

    def parsed_outputs(self):
        return [tuple(tok.split(":")) for tok in self.outputs.split()]


SPECS = {
    "UNETLoader": Spec("Load Diffusion Model", "unet_name:COMBO weight_dtype:COMBO", "MODEL:MODEL"),
    "CLIPLoader": Spec("Load CLIP", "clip_name:COMBO type:COMBO device:COMBO?", "CLIP:CLIP"),
    "VAELoader": Spec("Load VAE", "vae_name:COMBO", "VAE:VAE"),
    "CLIPTextEncode": Spec("CLIP Text Encode (Prompt)", "text:STRING clip:CLIP", "CONDITIONING:CONDITIONING"),
    "LoadVideo": Spec("Load Video", "file:COMBO", "VIDEO:VIDEO", ui_widgets=("image",)),
    "GetVideoComponents": Spec("Get Video Components", "video:VIDEO", "images:IMAGE audio:AUDIO fps:FLOAT"),
    "EmptyHunyuanLatentVideo": Spec("EmptyHunyuanLatentVideo", "width:INT height:INT length:INT batch_size:INT",
                                    "LATENT:LATENT"),
    "KSampler": Spec("KSampler", "model:MODEL seed:INT+ steps:INT cfg:FLOAT sampler_name:COMBO scheduler:COMBO "
                     "positive:CONDITIONING negative:CONDITIONING latent_image:LATENT denoise:FLOAT", "LATENT:LATENT"),
    "KSamplerAdvanced": Spec("KSampler (Advanced)", "model:MODEL add_noise:COMBO noise_seed:INT+ steps:INT cfg:FLOAT "
                             "sampler_name:COMBO scheduler:COMBO positive:CONDITIONING negative:CONDITIONING "
                             "latent_image:LATENT start_at_step:INT end_at_step:INT return_with_leftover_noise:COMBO",
                             "LATENT:LATENT"),
    "ModelSamplingSD3": Spec("ModelSamplingSD3", "model:MODEL shift:FLOAT", "MODEL:MODEL"),
    "VAEDecode": Spec("VAE Decode", "samples:LATENT vae:VAE", "IMAGE:IMAGE"),
    "CreateVideo": Spec("Create Video", "images:IMAGE fps:FLOAT audio:AUDIO?", "VIDEO:VIDEO"),
    "SaveVideo": Spec("Save Video", "video:VIDEO filename_prefix:STRING format:COMBO codec:COMBO", ""),
    "LoadImage": Spec("Load Image", "image:COMBO", "IMAGE:IMAGE MASK:MASK", ui_widgets=("image",)),
    "CLIPVisionLoader": Spec("Load CLIP Vision", "clip_name:COMBO", "CLIP_VISION:CLIP_VISION"),
    "CLIPVisionEncode": Spec("CLIP Vision Encode", "clip_vision:CLIP_VISION image:IMAGE crop:COMBO",
                             "CLIP_VISION_OUTPUT:CLIP_VISION_OUTPUT"),
    "WanImageToVideo": Spec("WanImageToVideo", "positive:CONDITIONING negative:CONDITIONING vae:VAE width:INT "
                            "height:INT length:INT batch_size:INT clip_vision_output:CLIP_VISION_OUTPUT? "
                            "start_image:IMAGE?", "positive:CONDITIONING negative:CONDITIONING latent:LATENT"),
    "Wan22ImageToVideoLatent": Spec("Wan22ImageToVideoLatent", "vae:VAE width:INT height:INT length:INT "
                                    "batch_size:INT start_image:IMAGE?", "LATENT:LATENT"),
    "FastVMTExtractMotion": Spec(
        "Extract Motion (Sliding Window)",
        "model:MODEL width:INT height:INT length:INT motion_block:INT temporal_span:INT window:INT tile_rows:INT "
        "tile_cols:INT tau:FLOAT images:IMAGE? vae:VAE? latent:LATENT? conditioning:CONDITIONING? "
        "clip_vision:CLIP_VISION?",
        "FASTVMT_MOTION:FASTVMT_MOTION", core=False),
    "FastVMTStepSkipSettings": Spec(
        "Step-Skip Settings",
        "mode:COMBO interval:INT inner_steps:INT lr_start:FLOAT lr_end:FLOAT guided_fraction:FLOAT lambda_amf:FLOAT "
        "lambda_window:FLOAT reference_noise:COMBO reference_seed:INT reference_sigma_cap:FLOAT? exit_block:INT? "
        "keep_activations:COMBO?",
        "FASTVMT_SETTINGS:FASTVMT_SETTINGS", core=False),
    "FastVMTGuidanceSampler": Spec(
        "FastVMT Guidance Sampler",
        "model:MODEL seed:INT+ steps:INT cfg:FLOAT sampler_name:COMBO scheduler:COMBO positive:CONDITIONING "
        "negative:CONDITIONING latent_image:LATENT denoise:FLOAT motion:FASTVMT_MOTION settings:FASTVMT_SETTINGS?",
        "LATENT:LATENT", core=False),
    "FastVMTApplyMotion": Spec("Apply FastVMT Motion",
                               "model:MODEL motion:FASTVMT_MOTION settings:FASTVMT_SETTINGS?", "model:MODEL",
                               core=False),
    "FastVMTSaveMotion": Spec("Save Motion", "motion:FASTVMT_MOTION filename_prefix:STRING", "", core=False),
    "FastVMTLoadMotion": Spec("Load Motion", "motion_file:COMBO", "FASTVMT_MOTION:FASTVMT_MOTION", core=False),
}

# Frontend-only node types (never sent to the server).
VIRTUAL_TYPES = {"Note", "MarkdownNote"}

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

LOADER_COLOR = ("#322", "#533")
NOTE_COLOR = ("#432", "#653")
PROMPT_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")


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

    def out(self, which: Union[int, str] = 0) -> Out:
        if isinstance(which, str):
            names = [n for n, _ in SPECS[self.type].parsed_outputs()]
            which = names.index(which)
        return Out(self, which)


@dataclass
class Group:
    title: str
    nodes: list
    color: str


class Graph:
    def __init__(self, name: str, description: str):
        self.name = name
        self.description = description
        self.nodes: list[Node] = []
        self.groups: list[Group] = []

    def add(self, type_: str, pos, *, title=None, size=None, color=None, **kw) -> Node:
        spec = SPECS[type_]
        names = {n for n, *_ in spec.parsed_inputs()}
        values, links = {}, {}
        for k, v in kw.items():
            if k not in names:
                raise KeyError(f"{type_} has no input {k!r}")
            if isinstance(v, Node):
                v = v.out(0)
            (links if isinstance(v, Out) else values)[k] = v
        for name, typ, optional, _ in spec.parsed_inputs():
            if typ in WIDGET_TYPES and name not in values and name not in links and not optional:
                raise KeyError(f"{type_}: widget {name!r} needs a value")
            if typ not in WIDGET_TYPES and name not in links and not optional:
                raise KeyError(f"{type_}: input {name!r} must be connected")
        node = Node(len(self.nodes) + 1, type_, tuple(pos), tuple(size or _default_size(spec)), title, values, links,
                    color)
        self.nodes.append(node)
        return node

    def note(self, text: str, pos, size=(380, 160), title="Note") -> Node:
        node = Node(len(self.nodes) + 1, "Note", tuple(pos), tuple(size), title, {"text": text}, {}, NOTE_COLOR)
        self.nodes.append(node)
        return node

    def group(self, title: str, nodes, color="#3f789e"):
        self.groups.append(Group(title, list(nodes), color))


def _default_size(spec: Spec):
    inputs = spec.parsed_inputs()
    sockets = sum(1 for _, t, *_ in inputs if t not in WIDGET_TYPES)
    widgets = sum(1 + c for _, t, _, c in inputs if t in WIDGET_TYPES) + len(spec.ui_widgets)
    outs = len(spec.parsed_outputs())
    return (320, 30 + 22 * max(sockets, outs) + 24 * widgets + 10)


# ---------------------------------------------------------------------------
# the workflows
# ---------------------------------------------------------------------------

def _loaders(g: Graph, x=0, y=0, clip=True):
    unet = g.add("UNETLoader", (x, y), unet_name=WAN_T2V_13B, weight_dtype="default", color=LOADER_COLOR)
    clip_node = None
    if clip:
        clip_node = g.add("CLIPLoader", (x, y + 150), clip_name=UMT5, type="wan", device="default",
                          color=LOADER_COLOR)
    vae = g.add("VAELoader", (x, y + 330 if clip else y + 150), vae_name=WAN_VAE, color=LOADER_COLOR)
    return unet, clip_node, vae


def _reference(g: Graph, unet, clip, vae, x, y, motion_block=None, size=None, clip_vision=None):
    """Reference video -> Extract Motion (``size``: the generation's width / height / length;
    ``clip_vision``: the CLIP vision loader of a Wan 2.1 image-to-video workflow)."""
    d = SETTINGS.FastVMTSettings()
    size = SIZE if size is None else size
    video = g.add("LoadVideo", (x, y), title="Reference Video", size=(320, 330), file=REFERENCE_VIDEO)
    comps = g.add("GetVideoComponents", (x, y + 370), video=video)
    ref_prompt = g.add("CLIPTextEncode", (x + 360, y + 420), title="Reference Prompt (empty)", size=(320, 100),
                       clip=clip, text="")
    extra = {} if clip_vision is None else {"clip_vision": clip_vision}
    extract = g.add("FastVMTExtractMotion", (x + 360, y), model=unet, images=comps.out("images"), vae=vae,
                    conditioning=ref_prompt, width=size["width"], height=size["height"], length=size["length"],
                    motion_block=d.motion_block if motion_block is None else motion_block,
                    temporal_span=d.temporal_span, window=d.window, tile_rows=d.tile[0], tile_cols=d.tile[1], tau=d.tau,
                    **extra)
    return video, comps, ref_prompt, extract


def _settings_module():
    """fastvmt_core/settings.py, the one source of every default (stdlib only: loaded by path,
    so building the workflows needs neither torch nor ComfyUI)."""
    spec = importlib.util.spec_from_file_location("fastvmt_settings", HERE.parent / "fastvmt_core" / "settings.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


SETTINGS = _settings_module()


def _settings(g: Graph, pos):
    return g.add("FastVMTStepSkipSettings", pos, **SETTINGS.FastVMTSettings().step_skip_inputs())


def _prompts(g: Graph, clip, x, y, positive_text, title="Positive Prompt"):
    pos = g.add("CLIPTextEncode", (x, y), title=title, size=(420, 180), color=PROMPT_COLOR, clip=clip,
                text=positive_text)
    neg = g.add("CLIPTextEncode", (x, y + 220), title="Negative Prompt", size=(420, 180), color=NEGATIVE_COLOR,
                clip=clip, text=NEGATIVE)
    return pos, neg


def _output(g: Graph, latent, vae, fps, x, y, prefix):
    decode = g.add("VAEDecode", (x, y), samples=latent, vae=vae)
    create = g.add("CreateVideo", (x, y + 130), images=decode, fps=fps)
    save = g.add("SaveVideo", (x + 340, y), size=(480, 420), video=create, filename_prefix=prefix, format="auto",
                 codec="auto")
    return decode, create, save


POSITIVE = ("A red fox runs across a snowy meadow toward the camera, its breath visible in the cold air, "
            "soft morning light, cinematic, highly detailed.")

NOTE_MODELS = (
    "Models (Comfy-Org's repackaged Wan 2.1):\n"
    f"- models/diffusion_models/{WAN_T2V_13B} (or the 14B)\n"
    f"- models/text_encoders/{UMT5}\n"
    f"- models/vae/{WAN_VAE}\n"
    "A missing file shows as a red loader; the frontend offers the download.")

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


def _transfer_inputs(g: Graph, unet=None, motion_block=None) -> dict:
    """The nodes the single-run workflows share: loaders, reference motion, prompts, empty
    latent and Step-Skip Settings (created in this order, so node ids stay stable).
    ``unet``: a callable adding the model the motion is extracted with (default: the loader)."""
    loader, clip, vae = _loaders(g, 0, 0)
    unet = loader if unet is None else unet(loader)
    video, comps, ref_prompt, extract = _reference(g, unet, clip, vae, 0, 500, motion_block)
    pos, neg = _prompts(g, clip, 760, 0, POSITIVE)
    latent = g.add("EmptyHunyuanLatentVideo", (760, 440), title="Empty Wan Latent Video", width=SIZE["width"],
                   height=SIZE["height"], length=SIZE["length"], batch_size=1)
    settings = _settings(g, (760, 640))
    return dict(loader=loader, unet=unet, clip=clip, vae=vae, video=video, comps=comps, ref_prompt=ref_prompt,
                extract=extract, pos=pos, neg=neg, latent=latent, settings=settings)


def _transfer_notes_and_groups(g: Graph, n: dict, guidance: list, out, note: str, note_pos, note_size) -> None:
    n1 = g.note(NOTE_MODELS, (-420, 0), (380, 200), "Models")
    n2 = g.note(NOTE_REFERENCE, (-420, 500), (380, 300), "Reference video and size")
    n3 = g.note(note, note_pos, note_size, "Prompt and guidance")
    g.group("Models", [n["loader"], n["clip"], n["vae"], *n.get("more_models", ()), n1])
    g.group("Reference motion", [n["video"], n["comps"], n["ref_prompt"], n["extract"], n2], "#8A8")
    g.group("Prompts and guidance", [n["pos"], n["neg"], n["latent"], n["settings"], *guidance, n3], "#88A")
    g.group("Output", list(out), "#a1309b")


def wf_guidance_sampler() -> Graph:
    g = Graph("fastvmt_wan21_t2v_motion_transfer",
              "FastVMT motion transfer with the FastVMT Guidance Sampler (Wan 2.1 T2V 1.3B).")
    n = _transfer_inputs(g)
    sampler = g.add("FastVMTGuidanceSampler", (1220, 0), size=(340, 380), model=n["unet"], positive=n["pos"],
                    negative=n["neg"], latent_image=n["latent"], motion=n["extract"], settings=n["settings"],
                    seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)
    out = _output(g, sampler, n["vae"], n["comps"].out("fps"), 1620, 0, "video/fastvmt")
    _transfer_notes_and_groups(g, n, [sampler], out, NOTE_SAMPLER, (1220, 420), (340, 320))
    return g


def wf_apply_motion() -> Graph:
    g = Graph("fastvmt_wan21_t2v_apply_motion_ksampler",
              "FastVMT motion transfer with Apply FastVMT Motion and the stock KSampler (Wan 2.1 T2V 1.3B).")
    n = _transfer_inputs(g)
    apply = g.add("FastVMTApplyMotion", (1220, 0), model=n["unet"], motion=n["extract"], settings=n["settings"])
    sampler = g.add("KSampler", (1220, 150), size=(340, 300), model=apply, positive=n["pos"], negative=n["neg"],
                    latent_image=n["latent"], seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple",
                    denoise=1.0)
    out = _output(g, sampler, n["vae"], n["comps"].out("fps"), 1620, 0, "video/fastvmt_ksampler")
    note = ("Apply FastVMT Motion returns a patched copy of the model; any stock sampler that takes a MODEL "
            "(KSampler, KSamplerAdvanced, SamplerCustomAdvanced) then transfers the motion. Same result as the "
            "FastVMT Guidance Sampler for the same inputs.\n\n" + NOTE_SAMPLER)
    _transfer_notes_and_groups(g, n, [apply, sampler], out, note, (1220, 490), (340, 420))
    return g


def wf_extract_save() -> Graph:
    g = Graph("fastvmt_wan21_t2v_extract_and_save_motion",
              "Extract a reference motion once and save it (step 1 of the motion library).")
    unet, clip, vae = _loaders(g, 0, 0)
    video, comps, ref_prompt, extract = _reference(g, unet, clip, vae, 0, 500)
    save = g.add("FastVMTSaveMotion", (760, 500), size=(340, 90), motion=extract, filename_prefix="fastvmt/motion")
    n = g.note(
        "Step 1 of 2: extract the motion once.\n\nThe file lands in output/fastvmt/motion_00001_.safetensors. "
        "Copy it into input/fastvmt/ (or upload it with fastvmt_runner.py --motion) and open "
        "'fastvmt_wan21_t2v_reuse_saved_motion' to generate as many videos from it as you like, without "
        "re-encoding the reference.\n\n" + NOTE_REFERENCE, (760, 640), (400, 400), "Save once, reuse")
    g.group("Models", [unet, clip, vae])
    g.group("Extract and save", [video, comps, ref_prompt, extract, save, n], "#8A8")
    return g


REUSE_PROMPTS = [
    ("Prompt A", POSITIVE),
    ("Prompt B", "An astronaut in a white spacesuit runs across the dusty surface of the moon, earth in the "
                 "black sky, cinematic lighting."),
    ("Prompt C", "A golden retriever runs along a sandy beach at sunset, waves in the background, "
                 "warm light, shallow depth of field."),
]


def wf_reuse() -> Graph:
    g = Graph("fastvmt_wan21_t2v_reuse_saved_motion",
              "Load a saved motion and generate several videos with different prompts (step 2 of the motion "
              "library).")
    unet, clip, vae = _loaders(g, 0, 0)
    motion = g.add("FastVMTLoadMotion", (0, 500), size=(340, 90), motion_file="fastvmt/motion_00001_.safetensors")
    settings = _settings(g, (0, 630))
    neg = g.add("CLIPTextEncode", (380, 0), title="Negative Prompt", size=(420, 180), color=NEGATIVE_COLOR,
                clip=clip, text=NEGATIVE)
    latent = g.add("EmptyHunyuanLatentVideo", (380, 220), title="Empty Wan Latent Video", width=SIZE["width"],
                   height=SIZE["height"], length=SIZE["length"], batch_size=1)
    chains = []
    for i, (title, text) in enumerate(REUSE_PROMPTS):
        y = 560 + i * 540
        pos = g.add("CLIPTextEncode", (380, y), title=title, size=(420, 180), color=PROMPT_COLOR, clip=clip, text=text)
        sampler = g.add("FastVMTGuidanceSampler", (840, y), size=(340, 380), model=unet, positive=pos, negative=neg,
                        latent_image=latent, motion=motion, settings=settings, seed=42, steps=50, cfg=6.0,
                        sampler_name="euler", scheduler="simple", denoise=1.0)
        out = _output(g, sampler, vae, 16.0, 1220, y, f"video/fastvmt_{'abc'[i]}")
        chains.append([pos, sampler, *out])
    n = g.note(
        "Step 2 of 2: one saved motion, several prompts.\n\nPut the file saved by "
        "'fastvmt_wan21_t2v_extract_and_save_motion' into input/fastvmt/ and pick it in 'Load Motion' "
        "(press R to refresh the list). The motion keeps its size: the empty latent's width / height / length "
        "must equal the ones it was extracted at (832x480x81 here).\n\nEach branch is one video; delete or "
        "bypass (Ctrl+B) branches you do not need, or copy one to add prompts. Videos are written at Wan's "
        "16 fps.", (-420, 500), (380, 320), "Reuse a saved motion")
    g.group("Models", [unet, clip, vae])
    g.group("Saved motion", [motion, settings, n], "#8A8")
    g.group("Shared", [neg, latent], "#88A")
    for i, chain in enumerate(chains):
        g.group(f"Video {'ABC'[i]}", chain, "#a1309b")
    return g


def wf_uni_pc() -> Graph:
    g = Graph("fastvmt_wan21_t2v_uni_pc",
              "FastVMT motion transfer with the settings of ComfyUI's Wan 2.1 template: uni_pc, 30 steps, shift 8.")
    n = _transfer_inputs(g, unet=lambda loader: g.add("ModelSamplingSD3", (380, 0), size=(320, 60),
                                                      model=loader, shift=8.0))
    n["more_models"] = [n["unet"]]
    sampler = g.add("FastVMTGuidanceSampler", (1220, 0), size=(340, 380), model=n["unet"], positive=n["pos"],
                    negative=n["neg"], latent_image=n["latent"], motion=n["extract"], settings=n["settings"],
                    seed=42, steps=30, cfg=6.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    out = _output(g, sampler, n["vae"], n["comps"].out("fps"), 1620, 0, "video/fastvmt_uni_pc")
    note = ("The sampler settings of ComfyUI's own Wan 2.1 text-to-video template: uni_pc / simple, 30 steps, "
            "cfg 6, shift 8. The first 20% of the process (6 of 30 steps) is guided; UniPC cannot take one step "
            "on its own, so those 6 steps are Euler steps (the first-order step of the same family for a flow "
            "model) and UniPC takes over from step 7.\n\n" + NOTE_SAMPLER.split("\n\n", 1)[0])
    _transfer_notes_and_groups(g, n, [sampler], out, note, (1220, 420), (340, 320))
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
    g = Graph("fastvmt_wan22_t2v_14b_two_experts",
              "FastVMT motion transfer on Wan 2.2 14B T2V: high- and low-noise experts, two KSamplerAdvanced.")

    def high(loader):
        loader.values["unet_name"] = WAN22_T2V_HIGH
        return g.add("ModelSamplingSD3", (380, 0), size=(320, 60), title="Shift (high noise)", model=loader,
                     shift=5.0)

    n = _transfer_inputs(g, unet=high, motion_block=20)
    low_loader = g.add("UNETLoader", (0, -150), title="Load Diffusion Model (low noise)", color=LOADER_COLOR,
                       unet_name=WAN22_T2V_LOW, weight_dtype="default")
    low = g.add("ModelSamplingSD3", (380, -150), size=(320, 60), title="Shift (low noise)", model=low_loader,
                shift=5.0)
    n["more_models"] = [n["unet"], low_loader, low]
    apply_high = g.add("FastVMTApplyMotion", (1220, 0), title="Apply FastVMT Motion (high noise)", model=n["unet"],
                       motion=n["extract"], settings=n["settings"])
    apply_low = g.add("FastVMTApplyMotion", (1220, 150), title="Apply FastVMT Motion (low noise)", model=low,
                      motion=n["extract"], settings=n["settings"])
    first = g.add("KSamplerAdvanced", (1220, 300), title="KSampler (high noise, steps 0-10)",
                  model=apply_high, positive=n["pos"], negative=n["neg"], latent_image=n["latent"],
                  add_noise="enable", noise_seed=42, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                  start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    second = g.add("KSamplerAdvanced", (1220, 720), title="KSampler (low noise, steps 10-20)",
                   model=apply_low, positive=n["pos"], negative=n["neg"], latent_image=first,
                   add_noise="disable", noise_seed=0, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                   start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    out = _output(g, second, n["vae"], n["comps"].out("fps"), 1620, 0, "video/fastvmt_wan22")
    _transfer_notes_and_groups(g, n, [apply_high, apply_low, first, second], out, NOTE_TWO_EXPERTS,
                               (1220, 1130), (340, 600))
    return g


# ---------------------------------------------------------------------------
# image-to-video
# ---------------------------------------------------------------------------

START_COLOR = "#A88"
I2V_POSITIVE = ("The subject in the image moves naturally through the scene, following the motion of the "
                "reference clip, soft natural light, cinematic, highly detailed.")


def _models_note(title: str, files) -> str:
    lines = [f"Models ({title}):"] + [f"- models/{MODEL_FILES[f][0]}/{f}" for f in files]
    return "\n".join(lines) + "\nA missing file shows as a red loader; the frontend offers the download."


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


def _i2v_inputs(g: Graph, *, unet_names: list, vae_name: str, shift: float, size: dict, motion_block: int,
                clip_vision: bool = False, latent_type: str = "WanImageToVideo") -> dict:
    """Loaders, start image, reference motion, prompts, the generation latent and Step-Skip
    Settings of the image-to-video workflows. ``unet_names``: one model, or the high- and
    low-noise experts (the motion is extracted with the first)."""
    two = len(unet_names) == 2
    expert = (" (high noise)", " (low noise)") if two else ("",)
    loaders, shifted = [], []
    for i, name in enumerate(unet_names):
        loaders.append(g.add("UNETLoader", (0, 150 * i), title=f"Load Diffusion Model{expert[i]}" if two else None,
                             color=LOADER_COLOR, unet_name=name, weight_dtype="default"))
        shifted.append(g.add("ModelSamplingSD3", (380, 150 * i), size=(320, 60),
                             title=f"Shift{expert[i]}" if two else None, model=loaders[i], shift=shift))
    y = 150 * len(unet_names)
    clip = g.add("CLIPLoader", (0, y), clip_name=UMT5, type="wan", device="default", color=LOADER_COLOR)
    vae = g.add("VAELoader", (0, y + 180), vae_name=vae_name, color=LOADER_COLOR)
    models = [*loaders, *shifted, clip, vae]
    vision = None
    if clip_vision:
        vision = g.add("CLIPVisionLoader", (0, y + 310), clip_name=CLIP_VISION_H, color=LOADER_COLOR)
        models.append(vision)
    y_img = max(n.pos[1] + n.size[1] for n in models) + 100
    image = g.add("LoadImage", (0, y_img), title="Start Image", size=(320, 360), image=START_IMAGE)
    start = [image]
    vision_out = None
    if clip_vision:
        vision_out = g.add("CLIPVisionEncode", (380, y_img), title="CLIP Vision Encode (start image)",
                           clip_vision=vision, image=image.out("IMAGE"), crop="none")
        start.append(vision_out)
    video, comps, ref_prompt, extract = _reference(g, shifted[0], clip, vae, 0, y_img + 460, motion_block, size,
                                                   vision)
    pos, neg = _prompts(g, clip, 760, 0, I2V_POSITIVE)
    if latent_type == "WanImageToVideo":
        latent = g.add("WanImageToVideo", (760, 440), size=(420, 250), positive=pos, negative=neg, vae=vae,
                       **({"clip_vision_output": vision_out} if clip_vision else {}), start_image=image.out("IMAGE"),
                       batch_size=1, **size)
        positive, negative, latent_out = latent.out("positive"), latent.out("negative"), latent.out("latent")
    else:
        latent = g.add("Wan22ImageToVideoLatent", (760, 440), size=(420, 180), vae=vae,
                       start_image=image.out("IMAGE"), batch_size=1, **size)
        positive, negative, latent_out = pos.out(0), neg.out(0), latent.out(0)
    settings = _settings(g, (760, latent.pos[1] + latent.size[1] + 50))
    return dict(models=models, unets=shifted, clip=clip, vae=vae, start=start, video=video, comps=comps,
                extract=extract, ref_prompt=ref_prompt, pos=pos, neg=neg, latent=latent, positive=positive,
                negative=negative, latent_out=latent_out, settings=settings)


def _i2v_notes_and_groups(g: Graph, n: dict, models_note: str, i2v_note: str, guidance: list, out, note: str,
                          note_pos, note_size) -> None:
    n1 = g.note(models_note, (-420, 0), (380, 220), "Models")
    n2 = g.note(i2v_note, (-420, n["video"].pos[1]), (380, 520), "Start image, reference video and size")
    n3 = g.note(note, note_pos, note_size, "Prompt and guidance")
    g.group("Models", [*n["models"], n1])
    g.group("Start image", n["start"], START_COLOR)
    g.group("Reference motion", [n["video"], n["comps"], n["ref_prompt"], n["extract"], n2], "#8A8")
    g.group("Prompts and guidance", [n["pos"], n["neg"], n["latent"], n["settings"], *guidance, n3], "#88A")
    g.group("Output", list(out), "#a1309b")


NOTE_STEP_SKIP = ("Step-Skip Settings are the paper's defaults (effi_AMF, interval 3, 10 inner steps, the first "
                  "20% of the steps guided). The node is optional. mode 'No_transfer' gives plain image-to-video "
                  "for comparison.")


def _fps_note(fps: int, template: str) -> str:
    return (f"Videos are written at {fps} fps, as in ComfyUI's {template} template; connect Get Video "
            "Components' fps to Create Video's fps to play at the reference clip's speed instead.")


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
    g = Graph("fastvmt_wan22_i2v_14b_two_experts",
              "FastVMT motion transfer on Wan 2.2 14B I2V: a start image, high- and low-noise experts, two "
              "KSamplerAdvanced.")
    n = _i2v_inputs(g, unet_names=[WAN22_I2V_HIGH, WAN22_I2V_LOW], vae_name=WAN_VAE, shift=8.0,
                    size=I2V_14B_SIZE, motion_block=20)
    high, low = n["unets"]
    apply_high = g.add("FastVMTApplyMotion", (1220, 0), title="Apply FastVMT Motion (high noise)", model=high,
                       motion=n["extract"], settings=n["settings"])
    apply_low = g.add("FastVMTApplyMotion", (1220, 150), title="Apply FastVMT Motion (low noise)", model=low,
                      motion=n["extract"], settings=n["settings"])
    first = g.add("KSamplerAdvanced", (1220, 300), title="KSampler (high noise, steps 0-10)",
                  model=apply_high, positive=n["positive"], negative=n["negative"], latent_image=n["latent_out"],
                  add_noise="enable", noise_seed=42, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                  start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    second = g.add("KSamplerAdvanced", (1220, 720), title="KSampler (low noise, steps 10-20)",
                   model=apply_low, positive=n["positive"], negative=n["negative"], latent_image=first,
                   add_noise="disable", noise_seed=0, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                   start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    out = _output(g, second, n["vae"], 16.0, 1620, 0, "video/fastvmt_wan22_i2v")
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.2", [WAN22_I2V_HIGH, WAN22_I2V_LOW, UMT5, WAN_VAE]),
        _i2v_note("It needs the reference frames ('images') and the VAE; its model is the high-noise expert, "
                  "the one that runs the guided steps.", "WanImageToVideo",
                  "640x640x81 is the size of ComfyUI's template; Wan 2.2 14B also does 1280x720 (more memory "
                  "and time)."),
        [apply_high, apply_low, first, second], out, NOTE_I2V_TWO_EXPERTS, (1220, 1130), (340, 680))
    return g


TI2V_5B_SIZE = dict(width=1280, height=704, length=121)

NOTE_TI2V_5B = (
    "Prompt: describe the video that starts from the start image; the motion comes from the reference.\n\n"
    "The sampler settings of ComfyUI's Wan 2.2 5B template: uni_pc / simple, 20 steps, cfg 5, shift 8. The "
    "first 20% of the process (4 of 20 steps) is guided; UniPC cannot take one step on its own, so those 4 "
    "steps are Euler steps and UniPC takes over from step 5.\n\n"
    "motion_block 14 is the paper's block for a 30-block model, as the 5B is. " + NOTE_STEP_SKIP + "\n\n"
    + _fps_note(24, "Wan 2.2 5B"))


def wf_ti2v_5b() -> Graph:
    g = Graph("fastvmt_wan22_ti2v_5b",
              "FastVMT motion transfer on Wan 2.2 TI2V 5B from a start image (Wan22ImageToVideoLatent).")
    n = _i2v_inputs(g, unet_names=[WAN22_TI2V_5B], vae_name=WAN22_VAE, shift=8.0, size=TI2V_5B_SIZE,
                    motion_block=14, latent_type="Wan22ImageToVideoLatent")
    sampler = g.add("FastVMTGuidanceSampler", (1220, 0), size=(340, 380), model=n["unets"][0],
                    positive=n["positive"], negative=n["negative"], latent_image=n["latent_out"], motion=n["extract"],
                    settings=n["settings"], seed=42, steps=20, cfg=5.0, sampler_name="uni_pc", scheduler="simple",
                    denoise=1.0)
    out = _output(g, sampler, n["vae"], 24.0, 1620, 0, "video/fastvmt_wan22_5b")
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.2", [WAN22_TI2V_5B, UMT5, WAN22_VAE]),
        _i2v_note("The 5B keeps the start image in the latent itself (Wan22ImageToVideoLatent's noise mask), so "
                  "Extract Motion needs only the reference frames ('images') and the Wan 2.2 VAE.",
                  "Wan22ImageToVideoLatent",
                  "1280x704x121 at 24 fps is the 5B's native 720p (the template's size); sizes are multiples of "
                  "32. Smaller sizes (e.g. 640x352, 49 frames) run much faster."),
        [sampler], out, NOTE_TI2V_5B, (1220, 420), (340, 460))
    return g


I2V_21_SIZE = dict(width=512, height=512, length=33)

NOTE_I2V_21 = (
    "Prompt: describe the video that starts from the start image; the motion comes from the reference.\n\n"
    "The sampler settings of ComfyUI's Wan 2.1 image-to-video template: uni_pc / simple, 20 steps, cfg 6, "
    "shift 8. The first 20% of the process (4 of 20 steps) is guided; UniPC cannot take one step on its own, "
    "so those 4 steps are Euler steps and UniPC takes over from step 5.\n\n"
    "motion_block 20 is the middle of the 14B's 40 blocks. " + NOTE_STEP_SKIP + "\n\n"
    + _fps_note(16, "Wan 2.1 image-to-video"))


def wf_i2v_wan21() -> Graph:
    g = Graph("fastvmt_wan21_i2v_480p",
              "FastVMT motion transfer on Wan 2.1 I2V 480p 14B from a start image (CLIP vision + WanImageToVideo).")
    n = _i2v_inputs(g, unet_names=[WAN21_I2V_480P], vae_name=WAN_VAE, shift=8.0, size=I2V_21_SIZE,
                    motion_block=20, clip_vision=True)
    sampler = g.add("FastVMTGuidanceSampler", (1220, 0), size=(340, 380), model=n["unets"][0],
                    positive=n["positive"], negative=n["negative"], latent_image=n["latent_out"], motion=n["extract"],
                    settings=n["settings"], seed=42, steps=20, cfg=6.0, sampler_name="uni_pc", scheduler="simple",
                    denoise=1.0)
    out = _output(g, sampler, n["vae"], 16.0, 1620, 0, "video/fastvmt_wan21_i2v")
    _i2v_notes_and_groups(
        g, n, _models_note("Comfy-Org's repackaged Wan 2.1", [WAN21_I2V_480P, UMT5, WAN_VAE, CLIP_VISION_H]),
        _i2v_note("It needs the reference frames ('images'), the VAE and, for Wan 2.1's CLIP-vision image "
                  "branch, the CLIP vision model on 'clip_vision' (the same Load CLIP Vision that encodes the "
                  "start image).", "WanImageToVideo",
                  "512x512x33 is the size of ComfyUI's template; the 480p model's native size is 832x480x81 "
                  "(more memory and time)."),
        [sampler], out, NOTE_I2V_21, (1220, 420), (340, 460))
    return g


WORKFLOWS = [wf_guidance_sampler, wf_apply_motion, wf_extract_save, wf_reuse, wf_uni_pc, wf_two_experts,
             wf_i2v_two_experts, wf_ti2v_5b, wf_i2v_wan21]


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


def to_ui(g: Graph) -> dict:
    links = []        # [id, origin, origin_slot, target, target_slot, type]
    out_links = {}    # (node id, slot) -> [link ids]
    node_inputs = {}
    for n in g.nodes:
        if n.type in VIRTUAL_TYPES:
            continue
        spec = SPECS[n.type]
        sockets, widget_inputs = [], []
        for name, typ, optional, _ in spec.parsed_inputs():
            ref = n.links.get(name)
            if typ in WIDGET_TYPES and ref is None:
                continue
            entry = {"name": name, "type": typ}
            if ref is not None:
                link_id = len(links) + 1
                origin_type = SPECS[ref.node.type].parsed_outputs()[ref.slot][1]
                entry["link"] = link_id
                links.append([link_id, ref.node.id, ref.slot, n.id, None, origin_type])
                out_links.setdefault((ref.node.id, ref.slot), []).append(link_id)
            else:
                entry["link"] = None
            if typ in WIDGET_TYPES:
                entry["widget"] = {"name": name}
                widget_inputs.append(entry)
            else:
                if optional:
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
                            for i, (name, typ) in enumerate(spec.parsed_outputs())]
            if n.title:
                d["title"] = n.title
            props = {"cnr_id": "comfy-core" if spec.core else PACK_CNR_ID, "Node name for S&R": n.type}
            models = [{"name": v, "url": MODEL_FILES[v][1], "directory": MODEL_FILES[v][0]}
                      for v in n.values.values() if isinstance(v, str) and v in MODEL_FILES]
            if models:
                props["models"] = models
            d["properties"] = props
            wv = []
            for name, typ, optional, control in spec.parsed_inputs():
                if typ not in WIDGET_TYPES:
                    continue
                if name in n.values:
                    wv.append(n.values[name])
                elif name in n.links:
                    wv.append(_widget_placeholder(n.type, name))
                else:
                    continue  # optional widget left at its default (not serialised)
                if control:
                    wv.append("fixed")
            wv.extend(spec.ui_widgets)
            d["widgets_values"] = wv
        if n.color:
            d["color"], d["bgcolor"] = n.color
        nodes.append(d)

    groups = []
    for i, grp in enumerate(g.groups, 1):
        x0 = min(n.pos[0] for n in grp.nodes) - 20
        y0 = min(n.pos[1] for n in grp.nodes) - 60
        x1 = max(n.pos[0] + n.size[0] for n in grp.nodes) + 20
        y1 = max(n.pos[1] + n.size[1] for n in grp.nodes) + 20
        groups.append({"id": i, "title": grp.title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": grp.color,
                       "font_size": 24, "flags": {}})
    return {
        "id": _stable_uuid(g.name),
        "revision": 0,
        "last_node_id": len(g.nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": {"scale": 0.6, "offset": [500, 100]}, "fastvmt": {"description": g.description}},
        "version": 0.4,
    }


_WIDGET_PLACEHOLDERS = {("CreateVideo", "fps"): 16.0}


def _widget_placeholder(type_, name):
    """Value kept in a widget whose input is linked (the frontend keeps one)."""
    return _WIDGET_PLACEHOLDERS[(type_, name)]


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
        for name, typ, optional, _ in spec.parsed_inputs():
            if name in n.links:
                ref = n.links[name]
                inputs[name] = [str(ref.node.id), ref.slot]
            elif name in n.values:
                inputs[name] = n.values[name]
        prompt[str(n.id)] = {"inputs": inputs, "class_type": n.type, "_meta": {"title": n.title or spec.display}}
    return prompt


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def check_layout(ui: dict):
    """Nodes must not overlap each other, nor groups each other (readable graphs)."""
    title = 30  # LiteGraph draws the title bar above pos
    rects = [(n["id"], [n["pos"][0], n["pos"][1] - title, n["size"][0], n["size"][1] + title]) for n in ui["nodes"]]
    for i, (ia, a) in enumerate(rects):
        for ib, b in rects[i + 1:]:
            if _overlap(a, b):
                raise ValueError(f"nodes {ia} and {ib} overlap")
    groups = ui["groups"]
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            if _overlap(a["bounding"], b["bounding"]):
                raise ValueError(f"groups {a['title']!r} and {b['title']!r} overlap")


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict:
    """Relative path (from this folder) -> file text, for every workflow."""
    files = {}
    for make in WORKFLOWS:
        g = make()
        ui = to_ui(g)
        try:
            check_layout(ui)
        except ValueError as e:
            raise ValueError(f"{g.name}: {e}") from None
        files[f"{g.name}.json"] = dumps(ui)
        files[f"api/{g.name}.api.json"] = dumps(to_api(g))
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a committed file differs from what would be written")
    args = ap.parse_args(argv)
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
        if bad:
            print("example workflows are out of date (run: python example_workflows/build.py):", file=sys.stderr)
            for line in bad:
                print(f"  {line}", file=sys.stderr)
            return 1
        print(f"example workflows up to date ({len(files)} files)")
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
