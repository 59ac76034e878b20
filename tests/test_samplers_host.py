"""Guided sampling on every sampler family and schedule Wan users run, in the real
executor: zero-lr runs equal plain sampling, KSamplerAdvanced splits and two experts
guide the same share of the whole schedule as one call, few-step runs never compare
against a pure-noise reference."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from fastvmt_core import FastVMTSettings
from tests.helpers.graphs import base_builder, base_graph, inspect, report, samples

STEPS = 6
ZERO_LR = {"lr_start": 0.0, "lr_end": 0.0, "inner_steps": 4, "guided_fraction": 0.34}  # 2 of 6 steps guided


def ksampler(g, node_id, model, sampler, steps=STEPS):
    """A stock KSampler on ``model`` (a link): the base graph's conditioning and empty latent, seed 7, cfg 1."""
    return g.node("KSampler", node_id, model=model, seed=7, steps=steps, cfg=1.0, sampler_name=sampler,
                  scheduler="simple", positive=g.lookup_node("pos").out(0), negative=g.lookup_node("neg").out(0),
                  latent_image=g.lookup_node("empty").out(0), denoise=1.0)


def ksampler_advanced(g, node_id, model, sampler, start, end, latent, *, first, steps=STEPS):
    """A stock KSamplerAdvanced on ``model`` for steps ``start``..``end``: the first of a split adds
    noise and returns the leftover noise, a later one does neither."""
    return g.node("KSamplerAdvanced", node_id, model=model, add_noise="enable" if first else "disable",
                  noise_seed=7, steps=steps, cfg=1.0, sampler_name=sampler, scheduler="simple",
                  positive=g.lookup_node("pos").out(0), negative=g.lookup_node("neg").out(0), latent_image=latent,
                  start_at_step=start, end_at_step=end, return_with_leftover_noise="enable" if first else "disable")


def with_plain(g, sampler, steps=STEPS):
    """``g`` with plain sampling on the loaded model: KSampler "plain" and its Inspect node."""
    inspect(g, ksampler(g, "plain", g.lookup_node("model").out(0), sampler, steps))
    return g


def relative_difference(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_sde", "heun", "lcm"])
def test_zero_lr_equals_plain_sampling_for_single_step_samplers(run_graph, tiny_wan, fastvmt_pack, sampler):
    g = with_plain(base_builder(tiny_wan, sampler=sampler, steps=STEPS, settings=ZERO_LR), sampler)
    r = run_graph(g.finalize()).raise_for_error()
    assert report(r)["n_guided"] == 2
    assert torch.equal(samples(r), samples(r, "plain"))


@pytest.fixture(scope="module")
def constant_velocity_wan(comfy, fastvmt_pack):
    """Tiny Wan whose head outputs a constant velocity (zero weight, constant bias): every
    ODE sampler must end at noise minus that constant, whatever its order or history."""
    sd = load_file(comfy.model_dir("diffusion_models") / comfy.tiny_wan())
    sd["head.head.weight"] = torch.zeros_like(sd["head.head.weight"])
    sd["head.head.bias"] = torch.full_like(sd["head.head.bias"], 0.5)
    path = comfy.model_dir("diffusion_models") / "fastvmt_tiny_wan_constant_velocity.safetensors"
    if not path.exists():
        save_file(sd, str(path))
        comfy.refresh_file_lists()
    return path.name


@pytest.mark.parametrize("sampler", ["uni_pc", "uni_pc_bh2", "dpmpp_2m", "deis", "res_multistep"])
def test_multistep_samplers_denoise_on_guided_steps(run_graph, constant_velocity_wan, sampler):
    g = with_plain(base_builder(constant_velocity_wan, sampler=sampler, steps=STEPS, settings=ZERO_LR), sampler)
    inspect(g, ksampler(g, "euler", g.lookup_node("model").out(0), "euler"))
    r = run_graph(g.finalize()).raise_for_error()
    exact = samples(r, "euler")  # Euler is exact on a constant velocity
    # UniPC stops at t = 0.001 instead of 0 (ComfyUI's uni_pc.py), hence the 0.1% tolerance;
    # a guided step that does not denoise leaves a third of the velocity in the result.
    assert relative_difference(samples(r, "plain"), exact) < 3e-3  # the model really is constant-velocity
    assert report(r)["n_guided"] == 2
    assert relative_difference(samples(r), samples(r, "plain")) < 3e-3


@pytest.mark.parametrize("sampler", ["dpmpp_2m_sde", "dpmpp_3m_sde", "er_sde"])
def test_multistep_sde_samplers_differ_from_plain_only_by_the_restart(run_graph, constant_velocity_wan, sampler):
    """10 steps, 2 guided: the history restarts twice. With one noise stream that costs 0.1-0.3%
    here; reseeding the noise at every guided step (the old chunking) cost 15-79%."""
    g = with_plain(base_builder(constant_velocity_wan, sampler=sampler, steps=10,
                                settings={**ZERO_LR, "guided_fraction": 0.2}), sampler, steps=10)
    r = run_graph(g.finalize()).raise_for_error()
    assert report(r)["n_guided"] == 2
    assert relative_difference(samples(r), samples(r, "plain")) < 0.02


@pytest.mark.parametrize("split", [1, 3])
def test_ksampler_advanced_split_equals_one_call(run_graph, tiny_wan, fastvmt_pack, split):
    g = base_builder(tiny_wan, steps=STEPS, settings={"inner_steps": 4, "guided_fraction": 0.34})
    settings = g.lookup_node("settings")
    settings.set_input("lr_start", 0.05)
    settings.set_input("lr_end", 0.05)
    patched = g.node("FastVMTApplyMotion", "patched", model=g.lookup_node("model").out(0),
                     motion=g.lookup_node("motion").out(0), settings=settings.out(0))
    whole = ksampler(g, "whole", patched.out(0), "euler")
    first_part = ksampler_advanced(g, "first", patched.out(0), "euler", 0, split, g.lookup_node("empty").out(0),
                                   first=True)
    second_part = ksampler_advanced(g, "second", patched.out(0), "euler", split, STEPS, first_part.out(0), first=False)
    for n in (whole, second_part):
        inspect(g, n)
    r = run_graph(g.finalize()).raise_for_error()
    whole, split_run, guided = samples(r, "whole"), samples(r, "second"), samples(r)
    assert torch.allclose(split_run, whole, rtol=1e-4, atol=1e-5)
    assert torch.allclose(whole, guided, rtol=1e-4, atol=1e-5)  # Apply Motion + KSampler = Guidance Sampler
    progress = {n: max(d["max"] for d in r.events_of("progress") if d.get("node") == n) for n in ("first", "second")}
    guided_in_first = min(split, 2)
    assert progress == {"first": split + 4 * guided_in_first, "second": STEPS - split + 4 * (2 - guided_in_first)}


def test_two_experts_guide_the_first_fifth_of_the_whole_schedule(run_graph, comfy, tiny_wan, fastvmt_pack):
    """Wan 2.2 A14B layout: high-noise expert for steps 0-5 of 10, low-noise expert for 5-10,
    the motion applied to both. Exactly the first 20% (2 steps) is guided, all by the high
    expert; the low expert's call runs plain."""
    low_name = comfy.tiny_wan(seed=1)
    g = base_builder(tiny_wan, steps=10, settings={"inner_steps": 3})
    motion, settings = g.lookup_node("motion").out(0), g.lookup_node("settings").out(0)
    low = g.node("UNETLoader", "low", unet_name=low_name, weight_dtype="default")
    high_m = g.node("FastVMTApplyMotion", "high_m", model=g.lookup_node("model").out(0), motion=motion,
                    settings=settings)
    low_m = g.node("FastVMTApplyMotion", "low_m", model=low.out(0), motion=motion, settings=settings)
    high_run = ksampler_advanced(g, "high_run", high_m.out(0), "euler", 0, 5, g.lookup_node("empty").out(0),
                                 first=True, steps=10)
    low_run = ksampler_advanced(g, "low_run", low_m.out(0), "euler", 5, 10, high_run.out(0), first=False, steps=10)
    low_plain = ksampler_advanced(g, "low_plain", low.out(0), "euler", 5, 10, high_run.out(0), first=False, steps=10)
    for n in (low_run, low_plain):
        inspect(g, n)
    r = run_graph(g.finalize()).raise_for_error()
    progress = {n: max(d["max"] for d in r.events_of("progress") if d.get("node") == n)
                for n in ("high_run", "low_run")}
    assert progress == {"high_run": 5 + 2 * 3, "low_run": 5}
    assert torch.equal(samples(r, "low_run"), samples(r, "low_plain"))
    assert report(r)["n_guided"] == 2  # the Guidance Sampler over all 10 steps guides the same 2


def test_four_step_distilled_run_says_its_pure_noise_reference_carries_no_motion(run_graph, tiny_wan, fastvmt_pack):
    """lightx2v-style: shift 5, 4 steps, cfg 1. The one guided step is at sigma 1.0, where the
    reference read at the generation's own sigma (the default) is pure noise: the summary says
    so. A cap below 1 gives that step a reference that still shows motion, and no note."""
    g = base_builder(tiny_wan, steps=4, settings={"inner_steps": 4})
    shifted = g.node("ModelSamplingSD3", "shifted", model=g.lookup_node("model").out(0), shift=5.0)
    g.lookup_node("sample").set_input("model", shifted.out(0))
    r = run_graph(g.finalize()).raise_for_error()
    rep = report(r)
    (step,) = rep["steps"]
    assert step["sigma"] == pytest.approx(1.0, abs=1e-3)
    assert FastVMTSettings().reference_sigma_cap == 1.0 and step["reference_sigma"] == pytest.approx(step["sigma"])
    assert rep["pure_noise_reference_steps"] == [0]
    assert "none of the guided steps could carry the reference's motion" in r.ui_output("sample")["text"][0]
    g.lookup_node("settings").set_input("reference_sigma_cap", 0.8)
    r = run_graph(g.finalize()).raise_for_error()
    (step,) = report(r)["steps"]
    assert step["reference_sigma"] == pytest.approx(0.8)
    assert report(r)["pure_noise_reference_steps"] == [] and "NOTE" not in r.ui_output("sample")["text"][0]
    assert step["losses"][-1] < step["losses"][0]


def test_a_run_with_no_step_in_the_guided_range_says_so(run_graph, tiny_wan, fastvmt_pack):
    """Two steps, each half of the process: the first 20% holds no step's midpoint."""
    g = with_plain(base_builder(tiny_wan, steps=2), "euler", steps=2)
    r = run_graph(g.finalize()).raise_for_error()
    text = r.ui_output("sample")["text"][0]
    assert "no step of this call lies in it" in text and "guided range is 0%-20%" in text
    assert torch.equal(samples(r), samples(r, "plain"))


def test_partial_denoise_guides_the_first_fifth_of_what_it_denoises(run_graph, tiny_wan, fastvmt_pack):
    g = base_graph(tiny_wan, steps=10, denoise=0.75, settings={"inner_steps": 2})
    rep = report(run_graph(g).raise_for_error())
    assert rep["n_guided"] == 2
    assert rep["range"]["start"] == pytest.approx(0.25, abs=0.02)
    assert rep["range"]["end"] == pytest.approx(0.25 + 0.2 * 0.75, abs=0.02)


def test_gradient_passes_use_an_attention_with_a_backward(run_graph, tiny_wan, fastvmt_pack):
    """An attention that, like SageAttention, returns correct values without a gradient must
    not change the guided result: gradient passes switch to SDPA, the rest keeps it."""
    g = base_builder(tiny_wan, settings={"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05})
    unet, sample = g.lookup_node("model"), g.lookup_node("sample")
    sage_like = g.node("FastVMTTestNoGradAttention", "sage_like", model=unet.out(0))
    guided_sage = g.node("FastVMTGuidanceSampler", "guided_sage", **{**sample.inputs, "model": sage_like.out(0)})
    plain_sage = ksampler(g, "plain_sage", sage_like.out(0), "euler", steps=5)
    plain = ksampler(g, "plain", unet.out(0), "euler", steps=5)
    for n in (guided_sage, plain_sage, plain):
        inspect(g, n)
    r = run_graph(g.finalize()).raise_for_error()
    assert torch.equal(samples(r, "plain_sage"), samples(r, "plain"))  # the override keeps the values
    assert not torch.equal(samples(r), samples(r, "plain"))  # guidance did change the latent
    assert torch.equal(samples(r, "guided_sage"), samples(r))
    losses = report(r, "guided_sage")["steps"][0]["losses"]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("exit_block", [-1, 999])
@pytest.mark.parametrize("cache", ["EasyCache", "LazyCache"])
def test_step_caches_keep_working_and_guidance_leaves_their_state_alone(run_graph, tiny_wan, fastvmt_pack, cache,
                                                                        exit_block):
    """ComfyUI's EasyCache / LazyCache skip DiT passes in sampling. Guidance passes must run
    the plain blocks and leave the cache's state as it was: with a zero learning rate the
    guided run equals plain sampling with the cache, which itself differs from no cache.
    exit_block 999 runs the whole DiT in guidance passes, as a cache would see a step."""
    settings = {**ZERO_LR, "guided_fraction": 0.5, "exit_block": exit_block}
    g = with_plain(base_builder(tiny_wan, steps=10, settings=settings), "euler", steps=10)
    cached = g.node(cache, "cached", model=g.lookup_node("model").out(0), reuse_threshold=3.0, start_percent=0.0,
                    end_percent=1.0, verbose=False)
    g.lookup_node("sample").set_input("model", cached.out(0))
    inspect(g, ksampler(g, "plain_cached", cached.out(0), "euler", steps=10))
    r = run_graph(g.finalize()).raise_for_error()
    assert report(r)["n_guided"] == 5
    assert not torch.equal(samples(r, "plain_cached"), samples(r, "plain"))  # the cache skipped steps
    assert torch.equal(samples(r), samples(r, "plain_cached"))


def test_reference_noise_of_the_generation_seed_is_not_the_generation_noise(comfy, fastvmt_pack):
    """ComfyUI draws a run's noise from its seed; the reference's noise drawn from the same
    number must not repeat it (level 3's seed 0 once compared two latents sharing every entry)."""
    import comfy.sample
    from fastvmt_core import reference_noise
    for batch in (1, 2):
        latent = torch.zeros(batch, 16, 3, 8, 12)
        for seed in (0, 7):
            gen = comfy.sample.prepare_noise(latent, seed)
            ref = reference_noise((1,) + tuple(latent.shape[1:]), seed, avoid=gen)
            corr = float((gen[0] * ref[0]).mean() / (gen[0].std() * ref[0].std()))
            assert abs(corr) < 0.1, (batch, seed, corr)
