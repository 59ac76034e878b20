"""The two-step workflows with a motion file: extract and save a reference clip's motion
once (step 1), then generate several videos from the saved motion (step 2)."""
from __future__ import annotations

from ..assets import SAVED_MOTION, UMT5, WAN_T2V_13B, WAN_VAE
from ..graph import Graph
from ..layout import At, Below, Grid, Mid, Row, place
from ..texts import note
from .common import (MODELS_COLOR, OUTPUT_COLOR, POSITIVE, PROMPTS_COLOR, REFERENCE_COLOR, SIZE, WAN21,
                     extract_motion, models_note, negative_prompt, positive_prompt, reference_prompt,
                     reference_video, video_output)

# Step 1: the model above, the reference row from y 400 (a wider note in column D).
EXTRACT_GRID = Grid.of(A=320, B=420, C=340, D=400)
REFERENCE_ROW = 400


def wf_extract_save() -> Graph:
    g = Graph("fastvmt_wan21_t2v_extract_and_save_motion", "Save a motion (step 1 of 2)",
              "Extract a reference clip's motion once and save it as a file, to reuse with any prompt.")
    unet = g.add("UNETLoader", size=(420, 110), unet_name=WAN_T2V_13B, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", size=(420, 86), vae_name=WAN_VAE)
    video = reference_video(g)
    comps = g.add("GetVideoComponents", size=(420, 106), video=video)
    ref_prompt = reference_prompt(g, clip)
    extract = extract_motion(g, unet, comps, vae, ref_prompt)
    save = g.add("FastVMTSaveMotion", size=(340, 90), motion=extract, filename_prefix="fastvmt/motion")
    save_note = g.note(note("extract_and_save"), size=(400, 500), title="Save once, reuse")
    models = g.note(models_note(WAN21, [WAN_T2V_13B, UMT5, WAN_VAE], " (or the 14B)"), size=(320, 250),
                    title="Models")
    place(g, EXTRACT_GRID, {
        "A": [models, (clip, At(REFERENCE_ROW)), video],
        "B": [unet, (ref_prompt, Row(clip)), vae, comps],
        "C": [(extract, Row(clip))],
        "D": [(save, Row(clip)), save_note],
    })
    g.group("Models", [unet, models], MODELS_COLOR)
    g.group("Extract and save", [clip, video, comps, ref_prompt, vae, extract, save, save_note], REFERENCE_COLOR)
    return g


REUSE_PROMPTS = [
    ("Prompt A", POSITIVE),
    ("Prompt B", "An astronaut in a white spacesuit runs across the dusty surface of the moon, earth in the "
                 "black sky, cinematic lighting."),
    ("Prompt C", "A golden retriever runs along a sandy beach at sunset, waves in the background, "
                 "warm light, shallow depth of field."),
]

# Step 2: models, settings and prompts in column B; one row per video: its sampler (C),
# VAE Decode and Create Video (D) and Save Video (E).
REUSE_GRID = Grid.of(A=320, B=(420, 160), C=(340, 180), D=(320, 40), E=480)  # C: room for the VAE link
VIDEO_ROW_GAP = 70   # between one video's row and the next (title bar to bottom)


def _reuse_plan(unet, clip, vae, motion, settings, neg, latent, chains, reuse_note) -> dict:
    prompts = [c[0] for c in chains]
    samplers = [c[1] for c in chains]
    return {
        "A": [reuse_note, (clip, Mid(neg, prompts[-1]))],
        "B": [unet, motion, settings, (latent, Below(settings, 90)), neg, (prompts[0], Below(neg, 70)),
              *prompts[1:]],
        "C": [samplers[0], *[(s, Below(above, VIDEO_ROW_GAP)) for above, s in zip(samplers, samplers[1:])], vae],
        "D": [item for _, s, decode, create, _ in chains for item in ((decode, Row(s)), create)],
        "E": [(save, Row(s)) for _, s, _, _, save in chains],
    }


def wf_reuse() -> Graph:
    g = Graph("fastvmt_wan21_t2v_reuse_saved_motion", "Reuse a saved motion (step 2 of 2)",
              "One saved motion, three prompts, three videos: no reference clip to encode.")
    unet = g.add("UNETLoader", size=(420, 110), unet_name=WAN_T2V_13B, weight_dtype="default")
    clip = g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default")
    vae = g.add("VAELoader", size=(340, 86), vae_name=WAN_VAE)
    motion = g.add("FastVMTLoadMotion", size=(420, 90), motion_file=SAVED_MOTION)
    settings = g.add("FastVMTStepSkipSettings", size=(420, 348))
    neg = negative_prompt(g, clip, size=(420, 140))
    latent = g.add("EmptyHunyuanLatentVideo", title="Empty Wan Latent Video", size=(420, 130), batch_size=1,
                   **SIZE)
    chains = []   # [prompt, sampler, decode, create, save] per video
    for i, (title, text) in enumerate(REUSE_PROMPTS):
        pos = positive_prompt(g, clip, text, title, size=(420, 140))
        sampler = g.add("FastVMTGuidanceSampler", size=(340, 320), model=unet, positive=pos, negative=neg,
                        latent_image=latent, motion=motion, settings=settings, seed=42, steps=50, cfg=6.0,
                        sampler_name="euler", scheduler="simple", denoise=1.0)
        chains.append([pos, sampler, *video_output(g, sampler, vae, 16.0, f"video/fastvmt_{'abc'[i]}")])
    reuse_note = g.note(note("reuse"), size=(320, 420), title="Reuse a saved motion")
    place(g, REUSE_GRID, _reuse_plan(unet, clip, vae, motion, settings, neg, latent, chains, reuse_note))
    g.group("Models and saved motion", [unet, motion, settings, reuse_note], MODELS_COLOR)
    g.group("Prompts and size", [clip, latent, neg] + [c[0] for c in chains], PROMPTS_COLOR)
    g.group("Sampling", [c[1] for c in chains] + [vae], REFERENCE_COLOR)
    for i, chain in enumerate(chains):
        g.group(f"Video {'ABC'[i]}", chain[2:], OUTPUT_COLOR)
    return g
