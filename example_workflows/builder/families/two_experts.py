"""Wan 2.2 14B with its two experts (text- and image-to-video): the motion applied to the
high- and the low-noise model, each sampled by a KSamplerAdvanced over its part of the
steps (the split of ComfyUI's templates)."""
from __future__ import annotations

from dataclasses import dataclass

from ..assets import UMT5, WAN22_I2V_HIGH, WAN22_I2V_LOW, WAN22_T2V_HIGH, WAN22_T2V_LOW, WAN_VAE
from ..graph import SLOT, Graph, Node
from ..layout import At, Below, Grid, Row
from ..texts import note
from . import i2v, t2v
from .common import WAN22, models_note

STEPS, SPLIT, CFG = 20, 10, 3.5


@dataclass(frozen=True)
class ExpertPair:
    apply_high: Node
    apply_low: Node
    first: Node    # the high-noise steps
    second: Node   # the low-noise steps


def expert_pair(g: Graph, high, low, motion, settings, positive, negative, latent) -> ExpertPair:
    """Apply FastVMT Motion on each expert's model, then two KSamplerAdvanced: the high-
    noise one runs steps 0-SPLIT and hands its leftover noise to the low-noise one."""
    apply_high = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (high noise)", model=high,
                       motion=motion, settings=settings)
    apply_low = g.add("FastVMTApplyMotion", size=(340, 110), title="Apply FastVMT Motion (low noise)", model=low,
                      motion=motion, settings=settings)
    common = dict(size=(340, 368), positive=positive, negative=negative, steps=STEPS, cfg=CFG, sampler_name="euler",
                  scheduler="simple")
    first = g.add("KSamplerAdvanced", title=f"KSampler (high noise, steps 0-{SPLIT})", model=apply_high,
                  latent_image=latent, add_noise="enable", noise_seed=42, start_at_step=0, end_at_step=SPLIT,
                  return_with_leftover_noise="enable", **common)
    second = g.add("KSamplerAdvanced", title=f"KSampler (low noise, steps {SPLIT}-{STEPS})", model=apply_low,
                   latent_image=first, add_noise="disable", noise_seed=0, start_at_step=SPLIT, end_at_step=10000,
                   return_with_leftover_noise="disable", **common)
    return ExpertPair(apply_high, apply_low, first, second)


def wf_two_experts() -> Graph:
    g = Graph("fastvmt_wan22_t2v_14b_two_experts", "Motion transfer: Wan 2.2 14B, two experts",
              "High- and low-noise experts in two KSamplerAdvanced, the motion applied to both (Wan 2.2 T2V).")
    n = t2v.transfer_inputs(g, unet_name=WAN22_T2V_HIGH, shift=5.0, motion_block=20)
    n.loader.title, n.unet.title = "Load Diffusion Model (high noise)", "Shift (high noise)"
    low_loader = g.add("UNETLoader", title="Load Diffusion Model (low noise)", unet_name=WAN22_T2V_LOW,
                       weight_dtype="default")
    low = g.add("ModelSamplingSD3", size=(420, 60), title="Shift (low noise)", model=low_loader, shift=5.0)
    pair = expert_pair(g, n.unet, low, n.extract, n.settings, n.pos, n.neg, n.latent)
    models_a, models_b = t2v.model_rows(n, top=150)   # under the low-noise rows
    t2v.finish(g, n, [pair.apply_low, pair.apply_high], pair.second, "video/fastvmt_wan22", note("t2v_two_experts"),
               note_size=(420, 620), note_column="F", samplers=[(pair.first, At(300)), pair.second],
               more_models=[low_loader, low], models=([low_loader, *models_a], [low, *models_b]))
    return g


# The image-to-video columns, with the output one column further right (the samplers take E).
I2V_GRID = Grid.of(A=320, B=420, C=340, D=(340, 160), E=(340, 160), F=(340, 40), G=480)


def wf_i2v_two_experts() -> Graph:
    g = Graph("fastvmt_wan22_i2v_14b_two_experts", "Image to video: Wan 2.2 14B, two experts",
              "A start image moved by the reference clip's motion; high- and low-noise experts in two "
              "KSamplerAdvanced.")
    n = i2v.i2v_inputs(g, unet_names=[WAN22_I2V_HIGH, WAN22_I2V_LOW], vae_name=WAN_VAE, shift=8.0,
                       size=dict(width=640, height=640, length=81), motion_block=20)
    high, low = n.unets
    pair = expert_pair(g, high, low, n.extract, n.settings, n.positive, n.negative, n.latent_out)
    fps = 16.0
    out = i2v.output(g, n, pair.second, fps, "video/fastvmt_wan22_i2v")
    decode, create, save = out
    notes = i2v.notes(g, models_note(WAN22, [WAN22_I2V_HIGH, WAN22_I2V_LOW, UMT5, WAN_VAE]),
                      note("wan22_i2v_14b_reference"),
                      note("wan22_i2v_14b_guidance", fps=fps, template="Wan 2.2 14B image-to-video"), 680)
    i2v.finish(g, n, I2V_GRID, notes, out, {
        "D": [(pair.apply_low, At(130)), pair.apply_high],
        "E": [(pair.first, At(560)), pair.second],
        "F": [(decode, At(-SLOT)), create, (notes[2], Below(create, 100))],
        "G": [(save, Row(decode))],
    }, guidance=[pair.apply_high, pair.apply_low, pair.first, pair.second])
    return g
