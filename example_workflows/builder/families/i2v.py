"""Image-to-video workflows on one model: Wan 2.2 TI2V 5B and Wan 2.1 I2V 480p (the
Guidance Sampler on the uni_pc settings of ComfyUI's templates). The loaders, start image
and reference here serve the two-expert image-to-video workflow too.

Same columns as the text-to-video workflows (common.WAN_GRID): A loaders, CLIP, notes,
Load Video; B the VAE, the shifted model(s), prompts, CLIP vision loader, start image,
reference prompt, Get Video Components; C CLIP Vision Encode, the latent node, Step-Skip
Settings, Extract Motion. The VAE and the model reach column D and the output along the
top edge, the start image joins column C's latent node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..assets import (CLIP_VISION_H, START_IMAGE, UMT5, WAN21_I2V_480P, WAN22_TI2V_5B, WAN22_VAE, WAN_VAE)
from ..graph import SLOT, Graph, Node
from ..layout import At, Below, Grid, Row, place
from ..texts import note
from .common import (I2V_POSITIVE, MODELS_COLOR, OUTPUT_COLOR, PROMPTS_COLOR, REFERENCE_COLOR, WAN21, WAN22,
                     WAN_GRID, extract_motion, models_note, negative_prompt, positive_prompt, reference_prompt,
                     reference_video, video_output)

# Where the latent node stands, from the negative prompt's row: WanImageToVideo takes both
# prompts; Wan22ImageToVideoLatent takes none and stands lower, by the start image.
LATENT_ROW = {"WanImageToVideo": -40, "Wan22ImageToVideoLatent": 200}


@dataclass(frozen=True)
class I2VNodes:
    loaders: list      # one model, or the high- and low-noise experts
    unets: list        # their shifts
    clip: Node
    vae: Node
    vision: Optional[Node]
    image: Node
    vision_out: Optional[Node]
    video: Node
    comps: Node
    ref_prompt: Node
    extract: Node
    pos: Node
    neg: Node
    latent: Node
    positive: object   # the conditioning and latent the sampler takes
    negative: object
    latent_out: object
    settings: Node

    @property
    def models(self) -> list:
        return [*self.loaders, *self.unets, self.clip, self.vae] + ([self.vision] if self.vision else [])


def _models(g: Graph, unet_names: list, vae_name: str, shift: float, clip_vision: bool) -> tuple:
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
    vision = g.add("CLIPVisionLoader", clip_name=CLIP_VISION_H) if clip_vision else None
    return loaders, shifted, clip, vae, vision


def _latent(g: Graph, latent_type: str, pos, neg, vae, image, vision_out, size) -> tuple:
    """The generation's latent node and (positive, negative, latent) for the sampler."""
    if latent_type == "WanImageToVideo":
        latent = g.add("WanImageToVideo", size=(340, 250), positive=pos, negative=neg, vae=vae,
                       **({"clip_vision_output": vision_out} if vision_out else {}), start_image=image.out("IMAGE"),
                       batch_size=1, **size)
        return latent, latent.out("positive"), latent.out("negative"), latent.out("latent")
    latent = g.add("Wan22ImageToVideoLatent", size=(340, 180), vae=vae, start_image=image.out("IMAGE"),
                   batch_size=1, **size)
    return latent, pos.out(0), neg.out(0), latent.out(0)


def i2v_inputs(g: Graph, *, unet_names: list, vae_name: str, shift: float, size: dict, motion_block: int,
               clip_vision: bool = False, latent_type: str = "WanImageToVideo") -> I2VNodes:
    """Loaders, start image, reference motion, prompts, the generation latent and Step-Skip
    Settings of the image-to-video workflows (created in this order, so node ids stay
    stable). ``unet_names``: one model, or the high- and low-noise experts (the motion is
    extracted with the first)."""
    loaders, shifted, clip, vae, vision = _models(g, unet_names, vae_name, shift, clip_vision)
    image = g.add("LoadImage", title="Start Image", size=(420 if not clip_vision else 320, 360), image=START_IMAGE)
    vision_out = None
    if clip_vision:
        vision_out = g.add("CLIPVisionEncode", size=(340, 110), title="CLIP Vision Encode (start image)",
                           clip_vision=vision, image=image.out("IMAGE"), crop="none")
    video = reference_video(g)
    comps = g.add("GetVideoComponents", size=(420, 106), video=video)
    ref_prompt = reference_prompt(g, clip)
    extract = extract_motion(g, shifted[0], comps, vae, ref_prompt, motion_block, size, vision)
    pos = positive_prompt(g, clip, I2V_POSITIVE)
    neg = negative_prompt(g, clip)
    latent, positive, negative, latent_out = _latent(g, latent_type, pos, neg, vae, image, vision_out, size)
    settings = g.add("FastVMTStepSkipSettings", size=(340, 348))
    return I2VNodes(loaders, shifted, clip, vae, vision, image, vision_out, video, comps, ref_prompt, extract, pos,
                    neg, latent, positive, negative, latent_out, settings)


def output(g: Graph, n: I2VNodes, latent, fps: float, prefix: str) -> tuple:
    return video_output(g, latent, n.vae, fps, prefix)


def notes(g: Graph, models: str, reference: str, guidance: str, guidance_h: int) -> tuple:
    """The Models, reference and guidance notes."""
    return (g.note(models, size=(320, 300), title="Models"),
            g.note(reference, size=(340, 560), title="Start image, reference video and size"),
            g.note(guidance, size=(340, guidance_h), title="Prompt and guidance"))


def _left_columns(n: I2VNodes, models_note: Node) -> dict:
    """Columns A to C; the model rows start at y 130, the lowest-noise expert on top."""
    rows = [(loader, Row(unet)) for loader, unet in zip(n.loaders, n.unets)][::-1]
    shifts = n.unets[::-1]
    start = [n.vision, n.image] if n.vision else [n.image]
    latent = [(n.vision_out, Row(n.vision)), n.latent] if n.vision else \
        [(n.latent, Row(n.neg, LATENT_ROW[n.latent.type]))]
    return {
        "A": [*rows, (n.clip, Row(n.neg)), models_note, (n.video, Row(n.extract))],
        "B": [n.vae, (shifts[0], At(130)), *shifts[1:], (n.pos, Row(n.unets[0], 180)), n.neg, *start,
              (n.ref_prompt, Row(n.extract, 60)), n.comps],
        "C": [*latent, n.settings, (n.extract, Below(n.settings, 100))],
    }


def finish(g: Graph, n: I2VNodes, grid: Grid, notes: tuple, out: tuple, right: dict, guidance: list) -> None:
    """Places the nodes (columns A to C here, ``right`` the columns from D on; the
    reference note goes under column D's nodes, on Extract Motion's row) and groups them.
    ``guidance``: the Guidance group's nodes besides the latent and the settings."""
    models_note, reference_note, _ = notes
    plan = {**_left_columns(n, models_note), **right}
    plan["D"] = [*plan["D"], (reference_note, Row(n.extract))]
    place(g, grid, plan)
    g.group("Models, prompts and start image", [*n.models, n.image, n.pos, n.neg, models_note], MODELS_COLOR)
    g.group("Guidance", [n.latent, n.settings, *guidance] + ([n.vision_out] if n.vision_out else []), PROMPTS_COLOR)
    g.group("Reference motion", [n.video, n.comps, n.ref_prompt, n.extract, reference_note], REFERENCE_COLOR)
    g.group("Output", list(out), OUTPUT_COLOR)


def _single_model(g: Graph, n: I2VNodes, *, cfg: float, fps: float, template: str, prefix: str,
                  models: str, reference: str, guidance: str) -> None:
    """The Guidance Sampler on the settings of ComfyUI's ``template`` (uni_pc / simple,
    20 steps), its output, notes and layout."""
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=n.unets[0], positive=n.positive,
                    negative=n.negative, latent_image=n.latent_out, motion=n.extract, settings=n.settings, seed=42,
                    steps=20, cfg=cfg, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    out = output(g, n, sampler, fps, prefix)
    decode, create, save = out
    ns = notes(g, models, reference, note(guidance, template=template, cfg=cfg, fps=fps), 500)
    finish(g, n, WAN_GRID, ns, out, {
        "D": [(sampler, At(130)), ns[2]],
        "E": [(decode, At(-SLOT)), create],
        "F": [(save, Row(decode))],
    }, guidance=[sampler, ns[2]])


def wf_ti2v_5b() -> Graph:
    g = Graph("fastvmt_wan22_ti2v_5b", "Image to video: Wan 2.2 TI2V 5B",
              "A start image moved by the reference clip's motion, 1280x704 at 24 fps (Wan22ImageToVideoLatent).")
    n = i2v_inputs(g, unet_names=[WAN22_TI2V_5B], vae_name=WAN22_VAE, shift=8.0,
                   size=dict(width=1280, height=704, length=121), motion_block=14,
                   latent_type="Wan22ImageToVideoLatent")
    _single_model(g, n, cfg=5.0, fps=24.0, template="Wan 2.2 5B", prefix="video/fastvmt_wan22_5b",
                  models=models_note(WAN22, [WAN22_TI2V_5B, UMT5, WAN22_VAE]),
                  reference=note("wan22_ti2v_5b_reference"), guidance="wan22_ti2v_5b_guidance")
    return g


def wf_i2v_wan21() -> Graph:
    g = Graph("fastvmt_wan21_i2v_480p", "Image to video: Wan 2.1 I2V 480p",
              "A start image moved by the reference clip's motion, with CLIP vision and WanImageToVideo.")
    n = i2v_inputs(g, unet_names=[WAN21_I2V_480P], vae_name=WAN_VAE, shift=8.0,
                   size=dict(width=512, height=512, length=33), motion_block=20, clip_vision=True)
    _single_model(g, n, cfg=6.0, fps=16.0, template="Wan 2.1 image-to-video", prefix="video/fastvmt_wan21_i2v",
                  models=models_note(WAN21, [WAN21_I2V_480P, UMT5, WAN_VAE, CLIP_VISION_H]),
                  reference=note("wan21_i2v_reference"), guidance="wan21_i2v_guidance")
    return g
