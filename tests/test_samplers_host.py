"""Guided sampling on every sampler family and schedule Wan users run, in the real
executor: zero-lr runs equal plain sampling, KSamplerAdvanced splits and two experts
guide the same share of the whole schedule as one call, few-step runs never compare
against a pure-noise reference."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from fastvmt_core import FastVMTSettings
from tests.test_nodes_host import base_graph, report, samples

STEPS = 6
ZERO_LR = {"lr_start": 0.0, "lr_end": 0.0, "inner_steps": 4, "guided_fraction": 0.34}  # 2 of 6 steps guided


def ksampler(model, sampler, steps=STEPS, latent="empty", cfg=1.0):
    return {"class_type": "KSampler",
            "inputs": {"model": model, "seed": 7, "steps": steps, "cfg": cfg, "sampler_name": sampler,
                       "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
                       "latent_image": [latent, 0] if isinstance(latent, str) else latent, "denoise": 1.0}}


def ksampler_advanced(model, sampler, start, end, latent, *, first, steps=STEPS):
    return {"class_type": "KSamplerAdvanced",
            "inputs": {"model": model, "add_noise": "enable" if first else "disable", "noise_seed": 7,
                       "steps": steps, "cfg": 1.0, "sampler_name": sampler, "scheduler": "simple",
                       "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": latent,
                       "start_at_step": start, "end_at_step": end,
                       "return_with_leftover_noise": "enable" if first else "disable"}}


def with_plain(g, sampler, steps=STEPS):
    g["plain"] = ksampler(["model", 0], sampler, steps)
    g["out_plain"] = {"class_type": "FastVMTTestInspect", "inputs": {"value": ["plain", 0]}}
    return g


def relative_difference(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_sde", "heun", "lcm"])
def test_zero_lr_equals_plain_sampling_for_single_step_samplers(run_graph, tiny_wan, fastvmt_pack, sampler):
    g = with_plain(base_graph(tiny_wan, sampler=sampler, steps=STEPS, settings=ZERO_LR), sampler)
    r = run_graph(g).raise_for_error()
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
    g = with_plain(base_graph(constant_velocity_wan, sampler=sampler, steps=STEPS, settings=ZERO_LR), sampler)
    g["euler"] = ksampler(["model", 0], "euler")
    g["out_euler"] = {"class_type": "FastVMTTestInspect", "inputs": {"value": ["euler", 0]}}
    r = run_graph(g).raise_for_error()
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
    g = with_plain(base_graph(constant_velocity_wan, sampler=sampler, steps=10,
                              settings={**ZERO_LR, "guided_fraction": 0.2}), sampler, steps=10)
    r = run_graph(g).raise_for_error()
    assert report(r)["n_guided"] == 2
    assert relative_difference(samples(r), samples(r, "plain")) < 0.02


@pytest.mark.parametrize("split", [1, 3])
def test_ksampler_advanced_split_equals_one_call(run_graph, tiny_wan, fastvmt_pack, split):
    g = base_graph(tiny_wan, steps=STEPS, settings={"inner_steps": 4, "guided_fraction": 0.34})
    g["settings"]["inputs"]["lr_start"] = g["settings"]["inputs"]["lr_end"] = 0.05
    g["patched"] = {"class_type": "FastVMTApplyMotion",
                    "inputs": {"model": ["model", 0], "motion": ["motion", 0], "settings": ["settings", 0]}}
    g["whole"] = ksampler(["patched", 0], "euler")
    g["first"] = ksampler_advanced(["patched", 0], "euler", 0, split, ["empty", 0], first=True)
    g["second"] = ksampler_advanced(["patched", 0], "euler", split, STEPS, ["first", 0], first=False)
    for n in ("whole", "second"):
        g["out_" + n] = {"class_type": "FastVMTTestInspect", "inputs": {"value": [n, 0]}}
    r = run_graph(g).raise_for_error()
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
    g = base_graph(tiny_wan, steps=10, settings={"inner_steps": 3})
    g["low"] = {"class_type": "UNETLoader", "inputs": {"unet_name": low_name, "weight_dtype": "default"}}
    g["high_m"] = {"class_type": "FastVMTApplyMotion",
                   "inputs": {"model": ["model", 0], "motion": ["motion", 0], "settings": ["settings", 0]}}
    g["low_m"] = {"class_type": "FastVMTApplyMotion",
                  "inputs": {"model": ["low", 0], "motion": ["motion", 0], "settings": ["settings", 0]}}
    g["high_run"] = ksampler_advanced(["high_m", 0], "euler", 0, 5, ["empty", 0], first=True, steps=10)
    g["low_run"] = ksampler_advanced(["low_m", 0], "euler", 5, 10, ["high_run", 0], first=False, steps=10)
    g["low_plain"] = ksampler_advanced(["low", 0], "euler", 5, 10, ["high_run", 0], first=False, steps=10)
    for n in ("low_run", "low_plain"):
        g["out_" + n] = {"class_type": "FastVMTTestInspect", "inputs": {"value": [n, 0]}}
    r = run_graph(g).raise_for_error()
    progress = {n: max(d["max"] for d in r.events_of("progress") if d.get("node") == n)
                for n in ("high_run", "low_run")}
    assert progress == {"high_run": 5 + 2 * 3, "low_run": 5}
    assert torch.equal(samples(r, "low_run"), samples(r, "low_plain"))
    assert report(r)["n_guided"] == 2  # the Guidance Sampler over all 10 steps guides the same 2


def test_four_step_distilled_run_never_reads_a_pure_noise_reference(run_graph, tiny_wan, fastvmt_pack):
    """lightx2v-style: shift 5, 4 steps, cfg 1. The one guided step is at sigma 1.0."""
    g = base_graph(tiny_wan, steps=4, settings={"inner_steps": 4})
    g["shifted"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["model", 0], "shift": 5.0}}
    g["sample"]["inputs"]["model"] = ["shifted", 0]
    r = run_graph(g).raise_for_error()
    (step,) = report(r)["steps"]
    assert step["sigma"] == pytest.approx(1.0, abs=1e-3)
    cap = FastVMTSettings().reference_sigma_cap
    assert cap < 1.0 and step["reference_sigma"] == pytest.approx(cap)  # the default cap
    assert step["losses"][-1] < step["losses"][0]
    g["settings"]["inputs"]["reference_sigma_cap"] = 1.0  # cap off: the old behaviour
    (step,) = report(run_graph(g).raise_for_error())["steps"]
    assert step["reference_sigma"] == pytest.approx(1.0, abs=1e-3)


def test_a_run_with_no_step_in_the_guided_range_says_so(run_graph, tiny_wan, fastvmt_pack):
    """Two steps, each half of the process: the first 20% holds no step's midpoint."""
    g = with_plain(base_graph(tiny_wan, steps=2), "euler", steps=2)
    r = run_graph(g).raise_for_error()
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
    g = base_graph(tiny_wan, settings={"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05})
    g["sage_like"] = {"class_type": "FastVMTTestNoGradAttention", "inputs": {"model": ["model", 0]}}
    g["guided_sage"] = {**g["sample"], "inputs": {**g["sample"]["inputs"], "model": ["sage_like", 0]}}
    g["plain_sage"] = ksampler(["sage_like", 0], "euler", steps=5)
    g["plain"] = ksampler(["model", 0], "euler", steps=5)
    for n in ("guided_sage", "plain_sage", "plain"):
        g["out_" + n] = {"class_type": "FastVMTTestInspect", "inputs": {"value": [n, 0]}}
    r = run_graph(g).raise_for_error()
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
    g = with_plain(base_graph(tiny_wan, steps=10, settings=settings), "euler", steps=10)
    g["cached"] = {"class_type": cache, "inputs": {"model": ["model", 0], "reuse_threshold": 3.0,
                                                   "start_percent": 0.0, "end_percent": 1.0, "verbose": False}}
    g["sample"]["inputs"]["model"] = ["cached", 0]
    g["plain_cached"] = ksampler(["cached", 0], "euler", steps=10)
    g["out_plain_cached"] = {"class_type": "FastVMTTestInspect", "inputs": {"value": ["plain_cached", 0]}}
    r = run_graph(g).raise_for_error()
    assert report(r)["n_guided"] == 5
    assert not torch.equal(samples(r, "plain_cached"), samples(r, "plain"))  # the cache skipped steps
    assert torch.equal(samples(r), samples(r, "plain_cached"))
