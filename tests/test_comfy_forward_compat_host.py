"""Forward-compatibility guards, in real ComfyUI 0.3.64: the call shapes of ComfyUI v0.38
(read from its comfy/samplers.py, comfy/ldm/wan/model.py, comfy_extras/nodes_custom_sampler.py)
simulated with 0.3.64's own classes, so each test fails when the pack would break on them.

* v0.38's guider calls: ``sample`` hands the OUTER_SAMPLE executor ``latent_shapes=``, and
  ``outer_sample`` / ``inner_sample`` take it (Guider_DualModel overrides both); the
  SAMPLER_SAMPLE chain may carry more arguments than the eight it has today;
* Wan token sequences longer than the latent's grid: v0.38's forward_orig appends
  ``context_latents`` tokens (with their own RoPE rows) after the latent's, Wan Fun's
  ``reference_latent`` puts tokens before them (0.3.64 builds the same layout from
  ``reference_latents`` + ``time_dim_concat``);
* ``transformer_options["block_index"]``, which v0.38 sets in one dict for every block;
* ``_calc_cond_batch_multigpu``, whose model calls run under ``torch.no_grad()``.
"""

import pytest
import torch

from comfy_host import pack_module
from tests.helpers.graphs import BLOCK, FRAMES, LAT_H, LAT_W, base_builder, node_outputs

GRID = FRAMES * (LAT_H // 2) * (LAT_W // 2)   # the latent's tokens (patch 1 x 2 x 2)
FRAME_TOKENS = (LAT_H // 2) * (LAT_W // 2)
ZERO_LR = dict(lr_start=0.0, lr_end=0.0, inner_steps=1, guided_fraction=0.2)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def compat(fastvmt_pack):
    return pack_module("nodes.wan.comfy_compat")




@pytest.fixture(scope="module")
def loaded(run_graph, tiny_wan, fastvmt_pack):
    return node_outputs(run_graph, base_builder(tiny_wan), ("model", "pos", "empty", "motion"))


def _guided(loaded, model=None, **settings):
    import fastvmt_core as core
    report = {}
    patched, _ = pack_module("nodes.wan.apply").apply_fastvmt(
        model or loaded["model"], loaded["motion"], core.FastVMTSettings(**{**ZERO_LR, **settings}), report=report)
    return patched, report


def _sample(model, loaded, seed=7):
    import comfy.sample as comfy_sample
    latent = loaded["empty"]["samples"]
    return comfy_sample.sample(model, comfy_sample.prepare_noise(latent, seed), 5, 1.0, "euler", "simple",
                               loaded["pos"], loaded["pos"], latent, disable_pbar=True, seed=seed)


def _guider_run(guider_class, model, loaded, sampler, noise=None, sigmas=None):
    import comfy.sample as comfy_sample
    import comfy.samplers as comfy_samplers
    latent = loaded["empty"]["samples"]
    guider = guider_class(model)
    guider.set_conds(loaded["pos"], loaded["pos"])
    guider.set_cfg(1.0)
    if sigmas is None:
        sigmas = comfy_samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 5)
    noise = comfy_sample.prepare_noise(latent, 7) if noise is None else noise
    return guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=7)


# ---- sampler-level call shapes --------------------------------------------------------------

def _v038_guider_class():
    import comfy.samplers as comfy_samplers

    class V038Guider(comfy_samplers.CFGGuider):
        """CFGGuider with v0.38's signatures (comfy/samplers.py): outer_sample and inner_sample
        take ``latent_shapes=None``; inner_sample sets ``inner_model.latent_shapes``."""
        seen = []

        def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                         disable_pbar=False, seed=None, latent_shapes=None):
            self.latent_shapes = latent_shapes
            return super().outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar,
                                        seed)

        def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar,
                         seed, latent_shapes=None):
            self.inner_model.latent_shapes = self.latent_shapes if latent_shapes is None else latent_shapes
            self.seen.append(self.inner_model.latent_shapes)
            return super().inner_sample(noise, latent_image, device, sampler, sigmas, denoise_mask, callback,
                                        disable_pbar, seed)
    return V038Guider


def _v038_outer_sample(executor, noise, latent_image, *args, **kwargs):
    """What v0.38's CFGGuider.sample adds to the OUTER_SAMPLE executor call."""
    return executor(noise, latent_image, *args, latent_shapes=[latent_image.shape], **kwargs)


def test_v038_guider_call_shapes_run_guided(compat, loaded):
    """OUTER_SAMPLE executor called with latent_shapes=, outer_sample / inner_sample taking it:
    FastVMT (which hooks SAMPLER_SAMPLE, one level below) still guides, and with a zero learning
    rate gives plain sampling's result."""
    import comfy.patcher_extension as patcher_extension
    import comfy.samplers as comfy_samplers
    guider_class = _v038_guider_class()
    guided, report = _guided(loaded)
    runs = {}
    for name, model in (("guided", guided), ("plain", loaded["model"].clone())):
        model.add_wrapper_with_key(patcher_extension.WrappersMP.OUTER_SAMPLE, "fastvmt_test_v038", _v038_outer_sample)
        runs[name] = _guider_run(guider_class, model, loaded, comfy_samplers.sampler_object("euler"))
    shape = loaded["empty"]["samples"].shape
    assert guider_class.seen == [[shape], [shape]], guider_class.seen
    assert report["n_guided"] == 1, report.get("text")
    assert torch.equal(runs["guided"], runs["plain"])


def _recording_ksampler(seen):
    import comfy.samplers as comfy_samplers

    class RecordingKSampler(comfy_samplers.KSAMPLER):
        """A KSAMPLER whose sample takes arguments past today's eight, as a later ComfyUI might."""

        def sample(self, *args, latent_shapes=None, **kwargs):
            seen.append((pack_module("nodes.wan.comfy_compat").function_name(self.sampler_function), args[8:],
                         latent_shapes))
            return super().sample(*args[:8], **kwargs)
    stock = comfy_samplers.sampler_object("euler")
    return RecordingKSampler(stock.sampler_function, stock.extra_options, stock.inpaint_options)


def test_extra_arguments_on_the_sampler_sample_chain_reach_the_sampler(compat, loaded):
    """A SAMPLER_SAMPLE chain that carries an extra positional and ``latent_shapes=``: our
    wrapper hands both on, on the guided path and on the path of a call with no guided step."""
    import comfy.samplers as comfy_samplers
    base = loaded["model"].clone()

    def extra(executor, *args, **kwargs):  # a wrapper before ours (added first: runs first)
        return executor(*args, "extra", latent_shapes=[args[4].shape], **kwargs)

    base.add_wrapper_with_key(compat.SAMPLER_SAMPLE, "fastvmt_test_extra", extra)
    patched, report = _guided(loaded, base)
    seen = []
    shape = loaded["empty"]["samples"].shape
    guided = _guider_run(comfy_samplers.CFGGuider, patched, loaded, _recording_ksampler(seen))
    assert report["n_guided"] == 1 and seen == [("guided_sampling", ("extra",), [shape])], seen
    plain = _guider_run(comfy_samplers.CFGGuider, base, loaded, _recording_ksampler(seen))
    assert torch.equal(guided, plain)
    # A continuing call (zero noise) past the guided range: the wrapper only passes through.
    sigmas = comfy_samplers.calculate_sigmas(base.get_model_object("model_sampling"), "simple", 5)[3:]
    seen.clear()
    _guider_run(comfy_samplers.CFGGuider, patched, loaded, _recording_ksampler(seen),
                noise=torch.zeros(shape), sigmas=sigmas)
    assert report["n_guided"] == 0 and seen == [("sample_euler", ("extra",), [shape])], seen


# ---- Wan tokens past the grid ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ref_conv_wan(comfy, run_graph, fastvmt_pack):
    """A tiny random Wan with ref_conv (Wan Fun's reference-image embedding), BLOCK + 1 blocks,
    loaded by ComfyUI's UNETLoader (detected from the ref_conv key)."""
    import comfy.ops as comfy_ops
    from comfy.ldm.wan.model import WanModel
    from safetensors.torch import save_file
    from comfy_host import init_tensor
    path = comfy.model_dir("diffusion_models") / "fastvmt_tiny_wan_ref_conv.safetensors"
    if not path.exists():
        with torch.device("meta"):
            m = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=256, ffn_dim=512, freq_dim=256,
                         text_dim=4096, out_dim=16, num_heads=2, num_layers=BLOCK + 1, qk_norm=True,
                         cross_attn_norm=True, eps=1e-6, in_dim_ref_conv=16, operations=comfy_ops.disable_weight_init)
        save_file({k: init_tensor(k, v.shape, 0).contiguous() for k, v in m.state_dict().items()}, str(path))
        comfy.refresh_file_lists()
    return node_outputs(run_graph, base_builder(path.name), ("model", "pos", "empty"))


def _real_block_qk(compat, base_model, conds, x, sigma, model_options):
    """The head-averaged q, k the real motion block gives its self-attention, over every token."""
    seen, inside = [], []

    def override(func, q, k, v, *args, **kwargs):
        if inside and not seen:
            seen.append((q, k, kwargs["heads"]))
        return func(q, k, v, *args, **kwargs)

    def patch(args, extra):
        inside.append(True)
        compat.run_original_block(args, extra)
        raise _Stop

    opts = compat.guidance_pass_options(model_options)
    compat.set_attention_override(opts, override)
    opts = compat.add_block_patch(opts, patch, BLOCK)
    with torch.no_grad(), pytest.raises(_Stop):
        compat.calc_cond_batch(base_model, [conds], x, sigma.reshape(1).expand(x.shape[0]), opts)
    q, k, heads = seen[0]
    b, s = q.shape[:2]
    return q.view(b, s, heads, -1).float().mean(2), k.view(b, s, heads, -1).float().mean(2)


def test_wan_tokens_past_the_grid_are_cut_to_the_latents_own(compat, ref_conv_wan):
    """[24 reference tokens][72 latent tokens][48 appended tokens], as v0.38 lays out a Wan Fun
    reference plus context_latents: the guidance pass's Q/K, without and with gradients, are
    the real block's Q/K of the 72 latent tokens, and the gradient reaches the latent."""
    import comfy.sample as comfy_sample
    qk = pack_module("nodes.wan.qk_capture")
    gen = torch.Generator().manual_seed(5)
    conds = {"reference_latents": [torch.randn(1, 16, 1, LAT_H, LAT_W, generator=gen)],
             "time_dim_concat": torch.randn(1, 16, 2, LAT_H, LAT_W, generator=gen)}
    pos = [[t, {**d, **conds}] for t, d in ref_conv_wan["pos"]]
    got = {}

    def probe(executor, guider, sigmas, extra_args, callback, noise, *args, **kwargs):
        spec = qk.QKPass(guider.inner_model, guider.conds["positive"], extra_args["model_options"], BLOCK)
        x, sigma = noise * sigmas[0], sigmas[0]
        got["real"] = _real_block_qk(compat, guider.inner_model, spec.conds, x, sigma, spec.model_options)
        with torch.no_grad():
            got["no_grad"] = qk.capture_qk(spec, x, sigma, qk.PassCounter())
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            q, k = qk.capture_qk(spec, xg, sigma, qk.PassCounter())
            (q.square().sum() + k.square().sum()).backward()
        got["grad"], got["x_grad"] = (q.detach(), k.detach()), xg.grad
        raise _Stop

    model = ref_conv_wan["model"].clone()
    model.add_wrapper_with_key(compat.SAMPLER_SAMPLE, "fastvmt_test_probe", probe)
    latent = ref_conv_wan["empty"]["samples"]
    with pytest.raises(_Stop):
        comfy_sample.sample(model, comfy_sample.prepare_noise(latent, 7), 2, 1.0, "euler", "simple", pos, pos, latent,
                            disable_pbar=True, seed=7)
    q_real, k_real = got["real"]
    assert q_real.shape[1] == FRAME_TOKENS + GRID + 2 * FRAME_TOKENS, "the simulated layout was not built"
    main = slice(FRAME_TOKENS, FRAME_TOKENS + GRID)
    for kind in ("no_grad", "grad"):
        q, k = got[kind]
        assert q.shape == (1, FRAMES, LAT_H // 2, LAT_W // 2, q_real.shape[-1]), (kind, q.shape)
        torch.testing.assert_close(q.reshape(1, GRID, -1), q_real[:, main], rtol=1e-5, atol=1e-5, msg=kind)
        torch.testing.assert_close(k.reshape(1, GRID, -1), k_real[:, main], rtol=1e-5, atol=1e-5, msg=kind)
    assert got["x_grad"] is not None and torch.isfinite(got["x_grad"]).all() and got["x_grad"].abs().sum() > 0


def test_main_token_inputs_keep_rope_and_per_token_modulation_in_step(compat, ref_conv_wan):
    """The cut (comfy_compat.main_token_inputs) on a real block with reference tokens before the
    latent's, appended tokens after them and per-token timesteps over the whole sequence: our
    Q/K of the latent's tokens equal the real block's, so RoPE and modulation rows are cut
    with the tokens."""
    dm = ref_conv_wan["model"].model.diffusion_model
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, FRAMES, LAT_H, LAT_W, generator=gen)
    ref = torch.randn(1, 16, LAT_H, LAT_W, generator=gen)
    appended = torch.randn(1, 16, 2, LAT_H, LAT_W, generator=gen)
    t = torch.rand(1, FRAME_TOKENS + GRID + 2 * FRAME_TOKENS, generator=gen) * 1000
    seen, ours, inside = [], [], []

    def override(func, q, k, v, *args, **kwargs):
        if inside and not seen:
            seen.append((q, k, kwargs["heads"]))
        return func(q, k, v, *args, **kwargs)

    def patch(args, extra):
        cut = compat.main_token_inputs(*compat.block_inputs(args), FRAME_TOKENS, GRID)
        ours.append(compat.block_qk(dm.blocks[BLOCK], *cut))
        inside.append(True)
        compat.run_original_block(args, extra)
        raise _Stop

    opts = compat.add_block_patch({"transformer_options": {"optimized_attention_override": override}}, patch, BLOCK)
    with torch.inference_mode(), pytest.raises(_Stop):
        dm(x, t, ref_conv_wan["pos"][0][0], time_dim_concat=appended, reference_latent=ref,
           transformer_options=opts["transformer_options"])
    q_real, k_real, heads = seen[0]
    assert q_real.shape[1] == t.shape[1]
    b = q_real.shape[0]
    for ours_t, real in zip(ours[0], (q_real, k_real)):
        real = real.view(b, -1, heads, real.shape[-1] // heads).float().mean(2)
        torch.testing.assert_close(ours_t, real[:, FRAME_TOKENS:FRAME_TOKENS + GRID], rtol=1e-6, atol=1e-6)


# ---- transformer_options["block_index"] -----------------------------------------------------

def test_each_block_sees_its_own_block_index_when_recomputed(compat, loaded, monkeypatch):
    """v0.38's forward_orig sets transformer_options["block_index"] = i before block i, in one
    dict for all blocks. Gradient blocks that are recomputed in backward (checkpoint) must see
    their own index then too, not the last block's."""
    qk = pack_module("nodes.wan.qk_capture")
    add_block_patch = qk.add_block_patch

    def v038_add_block_patch(opts, patch, index):
        def with_index(args, extra):
            args["transformer_options"]["block_index"] = index
            return patch(args, extra)
        return add_block_patch(opts, with_index, index)

    monkeypatch.setattr(qk, "add_block_patch", v038_add_block_patch)
    seen = []
    blocks = loaded["model"].model.diffusion_model.blocks
    hooks = [b.register_forward_pre_hook(
        lambda _m, _a, kw, j=j: seen.append((j, kw["transformer_options"].get("block_index"),
                                             torch.is_grad_enabled())), with_kwargs=True)
             for j, b in enumerate(blocks)]
    try:
        _sample(_guided(loaded, keep_activations="never")[0], loaded)
    finally:
        for h in hooks:
            h.remove()
    graded = [(j, i) for j, i, grad in seen if grad and i is not None]
    assert sum(1 for j, _ in graded if j == 0) >= 2, "no block was recomputed in backward"
    wrong = sorted({(j, i) for j, i in graded if j != i})
    assert not wrong, f"(block, block_index it saw): {wrong}"


# ---- passes that lose the latent's gradient -------------------------------------------------

def test_multigpu_cond_batching_is_refused_by_name(loaded):
    """v0.38's MultiGPU node puts model_options["multigpu_clones"]; calc_cond_batch then runs
    _calc_cond_batch_multigpu, under torch.no_grad(). The first gradient pass refuses it."""
    patched, _ = _guided(loaded, lr_start=0.05, lr_end=0.05)
    patched.model_options["multigpu_clones"] = {}
    with pytest.raises(ValueError) as err:
        _sample(patched, loaded)
    msg = str(err.value)
    assert "torch.no_grad()" in msg and "_calc_cond_batch_multigpu" in msg and "use one GPU" in msg, msg


@pytest.mark.parametrize("multigpu_thread", [False, True], ids=["wrapper", "multigpu_thread"])
def test_no_grad_inside_the_model_call_is_named(loaded, multigpu_thread):
    """torch.no_grad() around apply_model inside calc_cond_batch (where v0.38's
    _calc_cond_batch_multigpu puts it; here ComfyUI's model_function_wrapper): the gradient
    pass names the cause, and the multi-GPU worker call (its transformer_options entry) by name."""
    patched, _ = _guided(loaded, lr_start=0.05, lr_end=0.05)

    def no_grad_call(apply_model, args):
        c = args["c"]
        if multigpu_thread:
            to = {**c["transformer_options"], "multigpu_thread_device": args["input"].device}
            c = {**c, "transformer_options": to}
        with torch.no_grad():
            return apply_model(args["input"], args["timestep"], **c)

    patched.set_model_unet_function_wrapper(no_grad_call)
    with pytest.raises(ValueError) as err:
        _sample(patched, loaded)
    msg = str(err.value)
    assert "torch.no_grad()" in msg, msg
    assert ("_calc_cond_batch_multigpu" in msg) == multigpu_thread, msg
    assert multigpu_thread or "does not carry one" in msg, msg


def test_dit_keywords_pass_our_wrapper_whatever_their_name(loaded):
    """The DiT gets every cond's keyword (v0.38: context_latents=); our DIFFUSION_MODEL wrapper
    hands them on in gradient passes too, even under names our own helpers use."""
    patched, report = _guided(loaded, lr_start=0.05, lr_end=0.05)

    def extra_keywords(apply_model, args):
        return apply_model(args["input"], args["timestep"], **args["c"], skip=torch.zeros(1), counter=torch.zeros(1))

    patched.set_model_unet_function_wrapper(extra_keywords)
    _sample(patched, loaded)
    assert report["steps"][0]["gradient_evaluations"] > 0, report.get("text")
