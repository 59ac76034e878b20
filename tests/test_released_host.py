"""One whole guided outer step, flow_definition 'released', against the authors' code: the same
tiny random Wan weights loaded by ComfyUI's UNETLoader and into the released ``WanModel``,
the same latent, reference latent, reference noise and timestep; the released
``guidance_step`` as written (tests/helpers/released.py) against our sampler hook as
ComfyUI's own ``comfy.sample.sample`` runs it."""

import pytest
import torch

from comfy_host import pack_module
from fastvmt_core import FastVMTSettings
from tests.helpers.graphs import builder, inspect
from tests.helpers.released import ReleasedPipeline, released_scheduler, released_wan_model, require_released

# The released code hard-codes block 14, window 21 and tile 3 x 4: 16 blocks, and a 24 x 24
# token grid (48 x 48 latent), 5 latent frames (more than its sf = 4).
FRAMES, LAT = 5, 48
DIM, HEADS, LAYERS, FFN = 256, 2, 16, 512
REFERENCE_SEED = 1234
STEPS, DENOISE = 5, 0.75  # the released example is video-to-video at denoise 0.75: step 0 is guided


@pytest.fixture(scope="module")
def released_run(comfy, run_graph, fastvmt_pack):
    root = require_released()
    name = comfy.tiny_wan(dim=DIM, num_layers=LAYERS, ffn_dim=FFN)
    g = builder()
    g.node("UNETLoader", "model", unet_name=name, weight_dtype="default")
    g.node("FastVMTTestConditioning", "pos", seed=1, tokens=8, text="a red fox")
    g.node("FastVMTTestLatent", "ref", seed=3, channels=16, frames=FRAMES, height=LAT, width=LAT)
    g.node("FastVMTExtractMotion", "motion", model=g.lookup_node("model").out(0), latent=g.lookup_node("ref").out(0),
           width=LAT * 8, height=LAT * 8, length=(FRAMES - 1) * 4 + 1, motion_block=14, temporal_span=4, window=21,
           tile_rows=3, tile_cols=4, tau=1.0)
    for node in ("model", "pos", "ref", "motion"):
        inspect(g, g.lookup_node(node), f"show_{node}")
    r = run_graph(g.finalize()).raise_for_error()
    out = {n: r.output(n, 0) for n in ("model", "pos", "ref", "motion")}
    from safetensors.torch import load_file
    out["state_dict"] = load_file(str(comfy.model_dir("diffusion_models") / name))
    out["root"] = root
    return out


def _our_step(run):
    """Our side: the latent after guided step 0 (step 0's callback shows the latent the sampler
    continues from) and the run's report."""
    import comfy.sample
    settings = FastVMTSettings(flow_definition="released", temporal_span=4, motion_block=14,
                               reference_seed=REFERENCE_SEED, reference_sigma_cap=1.0)
    report = {}
    clone, _ = pack_module("nodes.wan.apply").apply_fastvmt(run["model"], run["motion"], settings, report=report)
    seen = {}

    def callback(step, x0, x, total):
        if step == settings.inner_steps:  # outer step 0, after its guidance: nothing more to run
            seen["x"] = x.detach().clone()
            raise _Captured
    latent = run["ref"]["samples"]
    with torch.inference_mode(), pytest.raises(_Captured):
        comfy.sample.sample(clone, _noise(run), STEPS, 1.0, "euler", "simple", run["pos"], run["pos"], latent,
                            denoise=DENOISE, callback=callback, seed=5, disable_pbar=True)
    return seen["x"], report


def _noise(run):
    return torch.randn(run["ref"]["samples"].shape, generator=torch.Generator().manual_seed(5))


class _Captured(Exception):
    pass


def test_one_guided_step_equals_the_released_guidance_step(released_run):
    x_ours, report = _our_step(released_run)
    assert report["steps"], f"no guided step ran: {report['text']}"
    sigma = report["steps"][0]["sigma"]
    base = released_run["model"].model
    # The latent the guided step starts from, as KSampler noises it (zero-lr runs equal plain
    # sampling: tests/test_samplers_host.py).
    x_plain = base.model_sampling.noise_scaling(torch.tensor([sigma]), _noise(released_run),
                                                base.process_latent_in(released_run["ref"]["samples"].float()))
    assert report["steps"][0]["reference_sigma"] == sigma  # released: the reference at the step's own sigma
    root = released_run["root"]
    clean = base.process_latent_in(released_run["motion"].latent.float())
    dit = released_wan_model(root, released_run["state_dict"], dim=DIM, num_heads=HEADS, num_layers=LAYERS,
                             ffn_dim=FFN)
    pipe = ReleasedPipeline(root, FRAMES, 4, dit=dit, clean_latents=clean, scheduler=released_scheduler(root, sigma))
    context = {"context": released_run["pos"][0][0].float()}
    size_info = {"tiled": True, "tile_size": (LAT // 2, LAT // 2), "frames": FRAMES}
    x_released = pipe.guidance_step(x_plain.clone(), torch.tensor([1000.0 * sigma]), context, context, {}, {}, None,
                                    size_info, sf=4, mode="effi_AMF", seed=REFERENCE_SEED, step_id=0, interval=3)
    change_ours, change_released = x_ours - x_plain, x_released.detach() - x_plain
    rel = ((change_ours - change_released).norm() / change_released.norm()).item()
    # AdamW's first step moves each entry by about lr x sign(gradient): an entry whose gradient is
    # within rounding of zero may step either way, so the changes agree to 5e-4 (6e-5 measured), not to 1e-6.
    assert change_released.abs().max() > 0.01, "the released step did not move the latent: nothing compared"
    print(f"released step: change max {change_released.abs().max():.4f}, relative difference {rel:.2e}")
    assert rel < 5e-4, f"the optimised latents differ: change relative error {rel:.2e}"



# ---- the setting in the executor, on the small test grid (3 x 4 x 6 tokens) -----------------

def _released_graph(tiny_wan, settings, window=3, tile=(2, 3)):
    from tests.helpers.graphs import base_builder
    g = base_builder(tiny_wan, settings={"flow_definition": "released", **settings})
    motion = g.lookup_node("motion")
    for name, value in {"window": window, "tile_rows": tile[0], "tile_cols": tile[1], "temporal_span": 2}.items():
        motion.set_input(name, value)
    return g


def test_released_with_zero_lr_equals_plain_sampling(run_graph, tiny_wan, fastvmt_pack):
    from tests.helpers.graphs import report, samples
    g = _released_graph(tiny_wan, {"lr_start": 0.0, "lr_end": 0.0, "inner_steps": 4, "guided_fraction": 0.4})
    plain = _released_graph(tiny_wan, {"mode": "No_transfer"})
    r, r_plain = run_graph(g.finalize()).raise_for_error(), run_graph(plain.finalize()).raise_for_error()
    assert report(r)["n_guided"] == 2
    assert torch.equal(samples(r), samples(r_plain))


def test_released_guidance_moves_the_latent(run_graph, tiny_wan, fastvmt_pack):
    from tests.helpers.graphs import GUIDED, report, samples
    r = run_graph(_released_graph(tiny_wan, GUIDED).finalize()).raise_for_error()
    plain = run_graph(_released_graph(tiny_wan, {"mode": "No_transfer"}).finalize()).raise_for_error()
    losses = report(r)["steps"][0]["losses"]
    assert len(losses) == 2 and all(v > 0 for v in losses)  # 4 inner steps, interval 3: evaluations at 0, 3
    assert not torch.equal(samples(r), samples(plain))


@pytest.mark.parametrize("window, tile, message", [(21, (3, 4), "not divisible by the tile"),
                                                   (5, (2, 3), "larger than the token grid")])
def test_released_refuses_a_grid_it_cannot_compute_before_sampling(run_graph, tiny_wan, fastvmt_pack, window, tile,
                                                                   message):
    r = run_graph(_released_graph(tiny_wan, {}, window=window, tile=tile).finalize())
    assert not r.success and r.error_node == "sample"
    assert "flow_definition" in r.exception_message and message in r.exception_message
    assert not r.events_of("progress"), "the error came after sampling started"
