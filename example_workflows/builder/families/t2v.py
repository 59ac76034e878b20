"""Single-run text-to-video workflows on Wan 2.1 1.3B: the Guidance Sampler, Apply Motion
with the stock KSampler, ComfyUI's uni_pc template settings, and a long video (161 frames)
through ComfyUI's context windows.

Columns (common.WAN_GRID), top rows; bottom rows:
  A  Load CLIP, Models note;                  Load Video
  B  the model (loader, or its shift), prompts, empty latent;
                                              reference prompt, VAE, Get Video Components
  C  Step-Skip Settings;                      Extract Motion
  D  the sampler(s), guidance note;           reference note
  E  VAE Decode, Create Video    F  Save Video (bottom rows)
The model reaches the sampler along the top edge, the VAE and the reference fps reach
the output below Extract Motion; everything else joins neighbouring columns.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..assets import UMT5, WAN_T2V_13B, WAN_VAE
from ..graph import SLOT, Graph, Node
from ..layout import At, Below, Row, nodes, place
from ..texts import note
from .common import (MODELS_COLOR, OUTPUT_COLOR, POSITIVE, PROMPTS_COLOR, REFERENCE_COLOR, SIZE, WAN21, WAN_GRID,
                     extract_motion, models_note, negative_prompt, positive_prompt, reference_prompt, reference_video,
                     video_output)


@dataclass(frozen=True)
class TransferNodes:
    loader: Node
    unet: Node        # the loader, or its shift
    clip: Node
    vae: Node
    video: Node
    comps: Node
    ref_prompt: Node
    extract: Node
    pos: Node
    neg: Node
    latent: Node
    settings: Node


def transfer_inputs(g: Graph, unet_name=WAN_T2V_13B, shift=None, motion_block=14, size=SIZE) -> TransferNodes:
    """Loaders, reference motion, prompts, empty latent and Step-Skip Settings of the
    single-run text-to-video workflows (created in this order, so node ids stay stable)."""
    loader = g.add("UNETLoader", unet_name=unet_name, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", vae_name=WAN_VAE)
    unet = loader
    if shift is None:
        loader.size = (420, loader.size[1])   # it stands in column B, as wide as the prompts
    else:
        unet = g.add("ModelSamplingSD3", size=(420, 60), model=loader, shift=shift)
    video = reference_video(g)
    comps = g.add("GetVideoComponents", video=video)
    ref_prompt = reference_prompt(g, clip)
    extract = extract_motion(g, unet, comps, vae, ref_prompt, motion_block, size=size)
    pos = positive_prompt(g, clip, POSITIVE)
    neg = negative_prompt(g, clip)
    latent = g.add("EmptyHunyuanLatentVideo", title="Empty Wan Latent Video", batch_size=1, **size)
    settings = g.add("FastVMTStepSkipSettings")
    return TransferNodes(loader, unet, clip, vae, video, comps, ref_prompt, extract, pos, neg, latent, settings)


def model_rows(n: TransferNodes, top: int = 0) -> tuple[list, list]:
    """The model's plan items in columns A and B, from y ``top``."""
    if n.unet is n.loader:
        return [], [(n.loader, At(top))]
    return [(n.loader, At(top))], [(n.unet, At(top))]


def finish(g: Graph, n: TransferNodes, guidance: list, latent, prefix: str, guidance_note: str, *,
           note_size=(340, 320), note_column="D", samplers=(), more_models=(), models=None) -> None:
    """Output, notes, column plan and groups. ``guidance``: the nodes of column D
    (top-down), ``samplers``: those of column E above the output; the guidance note
    stands under column D's, or at the top of ``note_column`` "F"."""
    out = video_output(g, latent, n.vae, n.comps.out("fps"), prefix)
    decode, create, save = out
    n1 = g.note(models_note(WAN21, [WAN_T2V_13B, UMT5, WAN_VAE], " (or the 14B)"), size=(320, 250), title="Models")
    n2 = g.note(note("t2v_reference"), size=(340, 330), title="Reference video and size")
    n3 = g.note(guidance_note, size=note_size, title="Prompt and guidance")
    models_a, models_b = models or model_rows(n)
    place(g, WAN_GRID, {
        "A": [*models_a, (n.clip, Row(n.pos, 60)), n1, (n.video, Row(n.extract))],
        "B": [*models_b, (n.pos, Row(n.unet, 180)), n.neg, n.latent, (n.ref_prompt, Row(n.extract, 60)),
              (n.vae, Below(n.extract, 10)), n.comps],
        "C": [(n.settings, Row(n.latent, 40)), (n.extract, Below(n.settings, 100))],
        "D": [*guidance, *([n3] if note_column == "D" else []), (n2, Row(n.extract))],
        "E": [*samplers, (decode, Row(n.vae, -SLOT)), (create, Row(n.comps, -2))],
        "F": [*([n3] if note_column == "F" else []), (save, Row(decode))],
    })
    loaders = [n.loader, n.clip] + ([n.unet] if n.unet is not n.loader else [])
    g.group("Models, prompts and size", [*loaders, *more_models, n.pos, n.neg, n.latent, n1], MODELS_COLOR)
    g.group("Guidance", [n.settings, *guidance, *nodes(samplers), n3], PROMPTS_COLOR)
    g.group("Reference motion", [n.video, n.comps, n.ref_prompt, n.vae, n.extract, n2], REFERENCE_COLOR)
    g.group("Output", list(out), OUTPUT_COLOR)


def guidance_sampler(g: Graph, n: TransferNodes, steps=50, sampler_name="euler") -> Node:
    return g.add("FastVMTGuidanceSampler", size=(340, 380), model=n.unet, positive=n.pos, negative=n.neg,
                 latent_image=n.latent, motion=n.extract, settings=n.settings, seed=42, steps=steps, cfg=6.0,
                 sampler_name=sampler_name, scheduler="simple", denoise=1.0)


def wf_guidance_sampler() -> Graph:
    g = Graph("fastvmt_wan21_t2v_motion_transfer", "Motion transfer: Wan 2.1 1.3B",
              "A reference clip's motion in a new text-to-video, with the FastVMT Guidance Sampler.")
    n = transfer_inputs(g)
    sampler = guidance_sampler(g, n)
    finish(g, n, [sampler], sampler, "video/fastvmt", note("t2v_guidance"))
    return g


def wf_apply_motion() -> Graph:
    g = Graph("fastvmt_wan21_t2v_apply_motion_ksampler", "Motion transfer: stock KSampler",
              "Apply FastVMT Motion patches the model; the stock KSampler then transfers the motion "
              "(Wan 2.1 1.3B).")
    n = transfer_inputs(g)
    apply = g.add("FastVMTApplyMotion", size=(340, 110), model=n.unet, motion=n.extract, settings=n.settings)
    sampler = g.add("KSampler", size=(340, 300), model=apply, positive=n.pos, negative=n.neg,
                    latent_image=n.latent, seed=42, steps=50, cfg=6.0, sampler_name="euler", scheduler="simple",
                    denoise=1.0)
    finish(g, n, [apply, sampler], sampler, "video/fastvmt_ksampler", note("t2v_apply_motion"), note_size=(340, 420))
    return g


def wf_uni_pc() -> Graph:
    g = Graph("fastvmt_wan21_t2v_uni_pc", "Motion transfer: uni_pc, 30 steps",
              "The sampler settings of ComfyUI's Wan 2.1 text-to-video template (uni_pc, 30 steps, shift 8).")
    n = transfer_inputs(g, shift=8.0)
    sampler = guidance_sampler(g, n, steps=30, sampler_name="uni_pc")
    finish(g, n, [sampler], sampler, "video/fastvmt_uni_pc", note("t2v_uni_pc"), more_models=[n.unet])
    return g


LONG = dict(SIZE, length=161)


def wf_long_video() -> Graph:
    g = Graph("fastvmt_wan21_t2v_long_video_161_frames", "Long video (161 frames)",
              "161 frames in ComfyUI's context windows; guidance runs in each window, on the reference's same "
              "frames.")
    n = transfer_inputs(g, size=LONG)
    windows = g.add("WanContextWindowsManual", size=(340, 250), model=n.unet, context_length=81,
                    context_overlap=30, context_schedule="standard_static", context_stride=1, closed_loop=False,
                    fuse_method="pyramid")
    sampler = g.add("FastVMTGuidanceSampler", size=(340, 380), model=windows, positive=n.pos, negative=n.neg,
                    latent_image=n.latent, motion=n.extract, settings=n.settings, seed=42, steps=50, cfg=6.0,
                    sampler_name="euler", scheduler="simple", denoise=1.0)
    finish(g, n, [windows, sampler], sampler, "video/fastvmt_long", note("t2v_long_video"), note_size=(340, 520),
           note_column="F")
    return g
