"""Guards on the ComfyUI internals the sampler hook relies on (nodes/wan/comfy_compat.py),
in real ComfyUI: each fails, naming what changed, when a ComfyUI release moves one of them.

* every sampler of KSampler.SAMPLERS is classified by our tables, and the noise stream we
  build for a guided call is the one the stock function builds for itself;
* our Q/K of the motion block equals what the real WanAttentionBlock gives its attention;
* our SAMPLER_SAMPLE wrapper's rebuilt wrapper chain reaches the real sampler and runs the
  wrappers added after ours.
"""

import pytest
import torch

from comfy_host import pack_module
from tests.helpers.graphs import BLOCK, FRAMES, LAT_H, LAT_W, base_builder, node_outputs

TABLES = ("SINGLE_STEP", "MULTISTEP", "WHOLE_CALL", "NO_SINGLE_STEP")


@pytest.fixture(scope="module")
def compat(fastvmt_pack):
    return pack_module("nodes.wan.comfy_compat")


@pytest.fixture(scope="module")
def loaded(run_graph, tiny_wan, fastvmt_pack):
    """The loader's model, the test conditioning and latent, and an extracted motion, as
    base_builder's nodes produce them (real UNETLoader and Extract Motion)."""
    return node_outputs(run_graph, base_builder(tiny_wan), ("model", "pos", "empty", "motion"))




def _sampler_functions():
    import comfy.samplers as comfy_samplers
    return {name: comfy_samplers.sampler_object(name) for name in comfy_samplers.KSampler.SAMPLERS}


# ---- sampler tables -----------------------------------------------------------------------

def test_every_ksampler_sampler_is_classified(compat):
    samplers = _sampler_functions()
    not_k = [n for n, s in samplers.items() if not compat.is_ksampler(s)]
    assert not not_k, f"KSampler.SAMPLERS entries that are no longer KSAMPLERs (guidance would refuse them): {not_k}"
    unknown = {n: compat.function_name(s.sampler_function) for n, s in samplers.items()
               if compat.step_family(s.sampler_function) is None}
    assert not unknown, (f"ComfyUI has samplers FastVMT has not classified: {unknown}. Decide how guided_sampling "
                         f"treats each and add it to one of {TABLES} in nodes/wan/comfy_compat.py (and to "
                         "BROWNIAN_TREE if its default noise is a Brownian tree).")
    tables = {t: getattr(compat, t) for t in TABLES}
    names = [n for t in tables.values() for n in t]
    assert len(names) == len(set(names)), f"a sampler function is in two tables: {tables}"
    used = {compat.function_name(s.sampler_function) for s in samplers.values()}
    stale = (set(names) | set(compat.BROWNIAN_TREE)) - used
    assert not stale, f"table entries no KSampler.SAMPLERS sampler uses any more (renamed in ComfyUI?): {stale}"


@pytest.fixture(scope="module")
def two_block_wan(comfy, run_graph, fastvmt_pack):
    out = node_outputs(run_graph, base_builder(comfy.tiny_wan(num_layers=2)), ("model", "pos", "empty"))
    return out["model"], out["pos"], out["empty"]["samples"]


def test_shared_noise_sampler_is_the_stock_default_noise(compat, two_block_wan):
    """guided_sampling hands every chunk of a call the noise sampler the stock function
    would build for itself; with it, each stock sampler gives exactly its own result."""
    import comfy.samplers as comfy_samplers
    shared_noise_sampler = pack_module("nodes.wan.sampler").shared_noise_sampler
    patcher, pos, latent = two_block_wan
    sigmas = comfy_samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), "simple", 4)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(11))
    checked, differ = [], []
    for name, stock in _sampler_functions().items():
        fn = stock.sampler_function
        ours = shared_noise_sampler(fn, noise, sigmas, 5)
        if ours is None:
            continue
        ours_sampler = comfy_samplers.KSAMPLER(fn, {**stock.extra_options, "noise_sampler": ours},
                                               stock.inpaint_options)
        a, b = (_guider_sample(patcher, pos, s, noise, latent, sigmas) for s in (stock, ours_sampler))
        checked.append(name)
        if not torch.equal(a, b):
            differ.append(name)
    assert len(checked) >= 20, checked  # the ancestral, SDE and multistep-SDE samplers
    assert not differ, (f"our shared noise sampler differs from the stock default noise of {differ}: fix "
                        "BROWNIAN_TREE / default_noise_sampler in nodes/wan/comfy_compat.py")


def _guider_sample(patcher, positive, sampler, noise, latent, sigmas):
    import comfy.samplers as comfy_samplers
    guider = comfy_samplers.CFGGuider(patcher)
    guider.set_conds(positive, positive)
    guider.set_cfg(1.0)
    return guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=5)


# ---- the motion block's queries and keys --------------------------------------------------

class _Stop(Exception):
    pass


@pytest.mark.parametrize("per_token_timestep", [False, True], ids=["timestep", "per_token_timestep"])
def test_block_qk_equals_the_real_blocks_attention_inputs(compat, loaded, per_token_timestep):
    """Inside the real WanAttentionBlock.forward, ComfyUI's attention override receives q and
    k after projection, RMSNorm and RoPE; head-averaged, they must equal our block_qk on the
    same block inputs. Per-token timesteps (Wan 2.2 TI2V) take the 4-D modulation path."""
    dm = loaded["model"].model.diffusion_model
    seen, ours, inside = [], [], []

    def override(func, q, k, v, *args, **kwargs):
        if inside:
            seen.append((q, k, kwargs["heads"]))
        return func(q, k, v, *args, **kwargs)

    def patch(args, extra):
        ours.append(compat.block_qk(dm.blocks[BLOCK], *compat.block_inputs(args)))
        inside.append(True)
        compat.run_original_block(args, extra)
        raise _Stop

    opts = compat.add_block_patch({"transformer_options": {"optimized_attention_override": override}}, patch, BLOCK)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, FRAMES, LAT_H, LAT_W, generator=gen)
    tokens = FRAMES * (LAT_H // 2) * (LAT_W // 2)
    t = torch.rand(1, tokens, generator=gen) * 1000 if per_token_timestep else torch.tensor([700.0])
    context = loaded["pos"][0][0]
    with torch.inference_mode(), pytest.raises(_Stop):
        dm(x, t, context, transformer_options=opts["transformer_options"])
    assert ours, "the block patch was not called: patches_replace['dit'][('double_block', i)] changed"
    assert seen, "the attention override was not called inside the block: optimized_attention_override changed"
    q_real, k_real, heads = seen[0]  # the block's first attention call is its self-attention
    b, s = q_real.shape[:2]
    q_ours, k_ours = ours[0]
    assert q_ours.shape == (b, s, q_real.shape[-1] // heads)
    torch.testing.assert_close(q_ours, q_real.view(b, s, heads, -1).float().mean(2), rtol=1e-6, atol=1e-6,
                               msg="block_qk's queries differ from WanAttentionBlock.forward's")
    torch.testing.assert_close(k_ours, k_real.view(b, s, heads, -1).float().mean(2), rtol=1e-6, atol=1e-6,
                               msg="block_qk's keys differ from WanAttentionBlock.forward's")


# ---- the wrapper chain --------------------------------------------------------------------

def test_wrapper_chain_reaches_the_sampler_and_later_wrappers(compat, loaded):
    """Our SAMPLER_SAMPLE wrapper rebuilds the chain after itself (continue_sampler_chain):
    a wrapper added after ours runs once, on our guided sampler, and the guided steps reach
    the real KSAMPLER.sample: with a zero learning rate the result is plain sampling's."""
    import comfy.patcher_extension as patcher_extension
    import comfy.sample as comfy_sample
    import fastvmt_core as core
    settings = core.FastVMTSettings(lr_start=0.0, lr_end=0.0, inner_steps=2, guided_fraction=0.4)
    report, after = {}, []
    patched, _ = pack_module("nodes.wan.apply").apply_fastvmt(loaded["model"], loaded["motion"], settings,
                                                              report=report)

    def later_wrapper(executor, *args, **kwargs):
        after.append(compat.function_name(executor.class_obj.sampler_function))
        return executor(*args, **kwargs)

    patched.add_wrapper_with_key(patcher_extension.WrappersMP.SAMPLER_SAMPLE, "fastvmt_test_after", later_wrapper)
    latent = loaded["empty"]["samples"]
    noise = comfy_sample.prepare_noise(latent, 7)

    def sample(model):
        return comfy_sample.sample(model, noise, 5, 1.0, "euler", "simple", loaded["pos"], loaded["pos"], latent,
                                   disable_pbar=True, seed=7)

    guided, plain = sample(patched), sample(loaded["model"])
    assert after == ["guided_sampling"], f"the wrapper after ours ran as {after} (expected once, on ours)"
    assert report["n_guided"] == 2 and len(report["steps"]) == 2, report.get("text")
    assert torch.equal(guided, plain)


# ---- context windows ------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["standard_static", "standard_uniform", "looped_uniform"])
def test_handler_windows_and_window_conds_are_what_the_handler_runs(compat, schedule):
    """Guidance asks ComfyUI's IndexListContextHandler (as WAN Context Windows (Manual) builds
    it) for each step's windows and cuts the conds as it does: the same windows, in the same
    order, and the same cut conds as its own execute() gives calc_cond_batch, at every step."""
    import comfy.model_patcher
    from comfy_extras.nodes_context_windows import WanContextWindowsManualNode
    patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), torch.device("cpu"), torch.device("cpu"))
    out = WanContextWindowsManualNode.execute(patcher, context_length=17, context_overlap=9,
                                              context_schedule=schedule, context_stride=1, closed_loop=False,
                                              fuse_method="pyramid")
    handler = compat.context_handler(out[0].model_options)
    frames = 11
    x = torch.zeros(1, 16, frames, 4, 6)
    sigmas = torch.linspace(1.0, 0.0, 7)
    opts = {"transformer_options": {"sample_sigmas": sigmas}}
    conds = [{"per_frame": torch.arange(frames, dtype=torch.float32).reshape(1, 1, frames, 1, 1), "strength": 1.0}]
    for sigma in sigmas[:-1]:
        seen = []

        def record(model, sub_conds, sub_x, sub_t, model_options):
            seen.append((list(model_options["transformer_options"]["context_window"].index_list), sub_conds[0]))
            return [torch.zeros_like(sub_x)]
        handler.execute(record, None, [conds], x, sigma.reshape(1), opts)
        ours = compat.handler_windows(handler, None, conds, x, sigma, opts)
        assert ours == [w for w, _ in seen], (float(sigma), ours)
        for w, cut in seen:
            mine = compat.window_conds(handler, conds, x, w)
            assert torch.equal(mine[0]["per_frame"], cut[0]["per_frame"]) and mine[0]["per_frame"].shape[2] == len(w)
            clean = {"transformer_options": {"sample_sigmas": sigmas}}
            exposed = compat.with_pass_window(clean, handler, w)["transformer_options"]["context_window"]
            assert list(exposed.index_list) == w and "context_window" not in clean["transformer_options"]
    # A video no longer than one window runs whole: no windows.
    assert compat.handler_windows(handler, None, conds, x[:, :, :5], sigmas[0], opts) is None
    # Guidance passes run their windows themselves: the handler is not in their options.
    assert "context_handler" not in compat.guidance_pass_options({**out[0].model_options, **opts})
