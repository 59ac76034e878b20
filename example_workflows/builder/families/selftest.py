"""The self-test on Wan 2.1 1.3B: the shipped reference clip, one prompt and seed sampled
without FastVMT (KSampler) and with it (Guidance Sampler), Motion Fidelity for both and a
side-by-side video (reference | plain | FastVMT). ``fastvmt_runner.py --selftest`` runs it
and prints both scores.

Columns, upper rows (generation); lower rows (reference and scores):
  A  Load CLIP, the Models note;                  Load Video
  B  the model, the VAE, prompts, empty latent;   reference prompt, Get Video Components,
                                                  the reference frames (as many as generated)
  C  -;                                           Extract Motion
  D  KSampler, Guidance Sampler;                  - (the reference frames pass here)
  E  the two VAE Decodes, on top
  F  - (a decoded video passes here);             Motion Fidelity (plain), Stitch 1,
                                                  Motion Fidelity (FastVMT)
  G  Stitch 2, Create Video, Save Video, the self-test note
The model, the VAE and the prompts reach columns D and E along the top rows C and D leave
free; the reference frames reach column F along the lower rows C to E leave free.
"""
from __future__ import annotations

from ..assets import SELFTEST_VIDEO, UMT5, WAN_T2V_13B, WAN_VAE
from ..graph import VIDEO_RESERVE, VIDEO_W, Graph
from ..layout import At, Below, Grid, Row, place
from ..texts import note
from .common import (MODELS_COLOR, OUTPUT_COLOR, PROMPTS_COLOR, REFERENCE_COLOR, WAN21, models_note,
                     negative_prompt, positive_prompt, reference_prompt)

SELFTEST_POSITIVE = ("An astronaut in a white spacesuit runs across a dusty red desert on Mars, rocks and low "
                     "hills behind, soft daylight, cinematic, highly detailed.")
SELFTEST_SIZE = dict(width=832, height=480, length=33)
SELFTEST_SAMPLING = dict(seed=42, steps=30, cfg=6.0, sampler_name="euler", scheduler="simple", denoise=1.0)

SELFTEST_FPS = 15.0   # the shipped clip's

SELFTEST_GRID = Grid.of(A=320, B=420, C=340, D=340, E=320, F=340, G=(420, 40))


def _inputs(g: Graph) -> dict:
    """Loaders, the reference clip and its motion, prompts and the empty latent."""
    n = {"unet": g.add("UNETLoader", size=(420, 110), unet_name=WAN_T2V_13B, weight_dtype="default"),
         "clip": g.add("CLIPLoader", clip_name=UMT5, type="wan", device="default"),
         "vae": g.add("VAELoader", size=(420, 86), vae_name=WAN_VAE)}
    n["video"] = g.add("LoadVideo", title="Reference Video (self-test clip)", size=(VIDEO_W, 400),
                       reserve=VIDEO_RESERVE, file=SELFTEST_VIDEO)
    n["comps"] = g.add("GetVideoComponents", video=n["video"])
    # the frames Extract Motion uses, for the scores and the video too (the clip may be longer)
    n["frames"] = g.add("ImageFromBatch", title="Reference frames (as many as generated)", size=(420, 106),
                        image=n["comps"].out("images"), batch_index=0, length=SELFTEST_SIZE["length"])
    # narrower than the column: the loaders' links to the second Extract Motion pass on its right
    n["ref_prompt"] = reference_prompt(g, n["clip"], size=(320, 100))
    n["extract"] = g.add("FastVMTExtractMotion", model=n["unet"], images=n["frames"], vae=n["vae"],
                         conditioning=n["ref_prompt"], motion_block=14, **SELFTEST_SIZE)
    # the released code's runs: its sf = 4 (offsets 0..3), the reference read at the step's own sigma
    n["extract_released"] = g.add("FastVMTExtractMotion", title="Extract Motion (released code: span 4)",
                                  model=n["unet"], images=n["frames"], vae=n["vae"], conditioning=n["ref_prompt"],
                                  motion_block=14, temporal_span=4, **SELFTEST_SIZE)
    n["released_settings"] = g.add("FastVMTStepSkipSettings", title="Step-Skip Settings (released code)",
                                   size=(320, 420), flow_definition="released", reference_sigma_cap=1.0)
    n["pos"] = positive_prompt(g, n["clip"], SELFTEST_POSITIVE, size=(420, 150))
    n["neg"] = negative_prompt(g, n["clip"], size=(420, 150))
    n["latent"] = g.add("EmptyHunyuanLatentVideo", title="Empty Wan Latent Video", batch_size=1, **SELFTEST_SIZE)
    return n


def _runs(g: Graph, n: dict) -> dict:
    """The plain and the FastVMT run, decoded and scored, and the side-by-side video."""
    common = dict(model=n["unet"], positive=n["pos"], negative=n["neg"], latent_image=n["latent"],
                  **SELFTEST_SAMPLING)
    r = {"plain": g.add("KSampler", title="KSampler (plain, no FastVMT)", size=(340, 300), **common),
         "fastvmt": g.add("FastVMTGuidanceSampler", size=(340, 380), motion=n["extract"], **common),
         "released": g.add("FastVMTGuidanceSampler", title="FastVMT Guidance Sampler (released code)",
                           size=(340, 380), motion=n["extract_released"], settings=n["released_settings"], **common)}
    r["decode_plain"] = g.add("VAEDecode", title="VAE Decode (plain)", samples=r["plain"], vae=n["vae"])
    r["decode_fastvmt"] = g.add("VAEDecode", title="VAE Decode (FastVMT)", samples=r["fastvmt"], vae=n["vae"])
    r["decode_released"] = g.add("VAEDecode", title="VAE Decode (released)", samples=r["released"], vae=n["vae"])
    images = n["frames"]
    r["score_plain"] = g.add("FastVMTMotionFidelity", title="Motion Fidelity (plain)", reference=images,
                             generated=r["decode_plain"])
    r["score_fastvmt"] = g.add("FastVMTMotionFidelity", title="Motion Fidelity (FastVMT)", reference=images,
                               generated=r["decode_fastvmt"])
    r["score_released"] = g.add("FastVMTMotionFidelity", title="Motion Fidelity (released)", reference=images,
                                generated=r["decode_released"])
    # the reference first: its even width plus two generated clips resized alike stays even (H.264)
    stitch = dict(direction="right", match_image_size=True, spacing_width=8, spacing_color="black")
    r["stitch1"] = g.add("ImageStitch", title="Stitch: reference | plain", image1=images,
                         image2=r["decode_plain"], **stitch)
    r["stitch2"] = g.add("ImageStitch", title="Stitch: reference | plain | FastVMT", image1=r["stitch1"],
                         image2=r["decode_fastvmt"], **stitch)
    r["stitch3"] = g.add("ImageStitch", title="Stitch: ... | released", image1=r["stitch2"],
                         image2=r["decode_released"], **stitch)
    r["create"] = g.add("CreateVideo", images=r["stitch3"], fps=SELFTEST_FPS)
    r["save"] = g.add("SaveVideo", size=(420, 330), video=r["create"], filename_prefix="video/fastvmt_selftest",
                      format="auto", codec="auto")
    return r


def wf_selftest() -> Graph:
    g = Graph("fastvmt_selftest_wan21_t2v", "Self-test: plain vs FastVMT, Wan 2.1",
              "One prompt and seed without and with FastVMT on the shipped clip: two Motion Fidelity "
              "scores, one video.")
    n = _inputs(g)
    r = _runs(g, n)
    models = g.note(models_note(WAN21, [WAN_T2V_13B, UMT5, WAN_VAE], " (or the 14B)"), size=(320, 250),
                    title="Models")
    guide = g.note(note("selftest", steps=SELFTEST_SAMPLING["steps"], **SELFTEST_SIZE), size=(420, 640),
                   title="Self-test: what to expect, how to report")
    place(g, SELFTEST_GRID, {
        "A": [(models, At(0)), (n["clip"], Row(n["released_settings"], 60)), (n["video"], Row(n["comps"], -200))],
        "B": [(n["unet"], At(0)), n["vae"], (n["pos"], Below(n["vae"], 40)), n["neg"], n["latent"],
              n["released_settings"], (n["ref_prompt"], Row(n["extract"], 60)),
              (n["comps"], Below(n["extract_released"], 0)), n["frames"]],
        "C": [(n["extract"], Below(r["released"], 70)), n["extract_released"]],
        "D": [(r["plain"], At(330)), r["fastvmt"], r["released"]],
        "E": [(r["decode_plain"], At(0)), r["decode_fastvmt"], r["decode_released"]],
        "F": [(r["score_plain"], Row(n["frames"], -420)), (r["stitch1"], Row(n["frames"], 100)),
              r["score_fastvmt"], r["score_released"]],
        "G": [(r["stitch2"], Row(r["decode_fastvmt"])), r["stitch3"], r["create"], r["save"], guide],
    })
    g.group("Models, prompts and size", [n["unet"], n["vae"], n["clip"], n["pos"], n["neg"], n["latent"], models,
                                         n["released_settings"]],
            MODELS_COLOR)
    g.group("Plain, FastVMT and FastVMT (released code)", [r["plain"], r["fastvmt"], r["released"], r["decode_plain"],
                                                          r["decode_fastvmt"], r["decode_released"]], PROMPTS_COLOR)
    g.group("Reference motion", [n["video"], n["comps"], n["frames"], n["ref_prompt"], n["extract"],
                                 n["extract_released"]], REFERENCE_COLOR)
    g.group("Scores and side-by-side video", [r["stitch1"], r["score_plain"], r["score_fastvmt"], r["score_released"],
                                              r["stitch2"], r["stitch3"], r["create"], r["save"], guide], OUTPUT_COLOR)
    return g
