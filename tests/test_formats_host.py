"""Guidance on the weight formats Wan users load, in the real executor: fp16/fp32 and
scaled-fp8 checkpoints under every weight_dtype of Load Diffusion Model, fast fp8 included
(ComfyUI's --supports-fp8-compute makes the fast path run on CPU too)."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.helpers.graphs import GUIDED, base_builder, base_graph, inspect, ksampler_like, lora_graph, report, samples
from tests.helpers.synthetic import write_lora_and_merged

FP8_MAX = 448.0  # largest float8_e4m3fn


@pytest.fixture(scope="module")
def scaled_fp8_wan(comfy, fastvmt_pack):
    """The tiny Wan as a scaled-fp8 checkpoint, laid out like Comfy-Org's *_fp8_scaled files:
    every Linear weight in float8_e4m3fn with its own ``scale_weight``, and a ``scaled_fp8``
    marker key."""
    path = comfy.model_dir("diffusion_models") / "fastvmt_tiny_wan_fp8_scaled.safetensors"
    if not path.exists():
        sd = load_file(comfy.model_dir("diffusion_models") / comfy.tiny_wan())
        for key in [k for k, v in sd.items() if k.endswith(".weight") and v.ndim == 2]:
            scale = sd[key].abs().max().float() / FP8_MAX
            sd[key] = (sd[key].float() / scale).to(torch.float8_e4m3fn)
            sd[key[:-len("weight")] + "scale_weight"] = scale.reshape(())
        sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
        save_file(sd, str(path))
        comfy.refresh_file_lists()
    return path.name


@pytest.fixture
def fp8_compute(monkeypatch):
    """What --supports-fp8-compute sets: ComfyUI takes its fast fp8 paths (torch._scaled_mm)."""
    import comfy.model_management
    monkeypatch.setattr(comfy.model_management, "SUPPORT_FP8_OPS", True)


@pytest.mark.parametrize("weight_dtype", ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"])
@pytest.mark.parametrize("checkpoint", ["fp32", "fp8_scaled"])
def test_guidance_runs_on_every_weight_dtype(run_graph, comfy, tiny_wan, scaled_fp8_wan, fp8_compute, checkpoint,
                                             weight_dtype):
    """The fast fp8 Linear has no backward ('derivative for aten::_scaled_mm is not
    implemented'); gradient passes take the cast + F.linear path instead."""
    name = tiny_wan if checkpoint == "fp32" else scaled_fp8_wan
    g = base_builder(name, settings={"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05})
    g.lookup_node("model").set_input("weight_dtype", weight_dtype)
    inspect(g, ksampler_like(g, "plain", g.lookup_node("sample")))
    r = run_graph(g.finalize()).raise_for_error()
    (step,) = report(r)["steps"]
    assert step["stopped"] is None and step["losses"][-1] < step["losses"][0], step
    assert torch.isfinite(samples(r)).all() and not torch.equal(samples(r), samples(r, "plain"))


def test_fast_fp8_really_takes_the_scaled_mm_path(run_graph, comfy, scaled_fp8_wan, fp8_compute, monkeypatch):
    """The test above exercises the fast path: plain sampling with fp8_e4m3fn_fast calls
    torch._scaled_mm (counted here), and its result differs from the cast path's."""
    calls = []
    original = torch._scaled_mm

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", counting)
    g = base_builder(scaled_fp8_wan, settings={"mode": "No_transfer"})
    g.lookup_node("model").set_input("weight_dtype", "fp8_e4m3fn_fast")
    run_graph(g.finalize()).raise_for_error()
    assert calls


def test_guided_result_with_a_lora_equals_the_merged_checkpoint(run_graph, comfy, tiny_wan, fastvmt_pack):
    """LoraLoaderModelOnly guides exactly like the checkpoint with the LoRA merged in.
    (Under a partial low-VRAM load: test_memory_host.py.)"""
    lora_name, merged_name = write_lora_and_merged(comfy, tiny_wan)
    a = run_graph(lora_graph(tiny_wan, lora_name)).raise_for_error()
    b = run_graph(base_graph(merged_name, settings=GUIDED)).raise_for_error()
    torch.testing.assert_close(report(a)["steps"][0]["losses"], report(b)["steps"][0]["losses"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(samples(a), samples(b), rtol=1e-4, atol=1e-5)
    plain = run_graph(base_graph(tiny_wan, settings=GUIDED))
    assert not torch.allclose(samples(plain.raise_for_error()), samples(a), rtol=1e-4, atol=1e-5)  # the LoRA matters


@pytest.fixture(scope="module")
def tiny_vace(comfy, fastvmt_pack):
    """A tiny random Wan VACE model with VaceWanModel's key names (vace_patch_embedding, two
    vace_blocks after blocks 0 and 8 of 16); ComfyUI detects it as a VACE model."""
    import comfy.ops as comfy_ops
    from comfy.ldm.wan.model import VaceWanModel
    from comfy_host import init_tensor
    path = comfy.model_dir("diffusion_models") / "fastvmt_tiny_wan_vace.safetensors"
    if not path.exists():
        with torch.device("meta"):
            m = VaceWanModel(patch_size=(1, 2, 2), in_dim=16, dim=256, ffn_dim=512, freq_dim=256, text_dim=4096,
                             out_dim=16, num_heads=2, num_layers=16, qk_norm=True, cross_attn_norm=True, eps=1e-6,
                             vace_layers=2, vace_in_dim=96, operations=comfy_ops.disable_weight_init)
        save_file({k: init_tensor(k, v.shape, 0) for k, v in m.state_dict().items()}, str(path))
        comfy.refresh_file_lists()
    return path.name


def vace_graph(model, vae, settings):
    g = base_builder(model, settings=settings)
    vae_node = g.node("VAELoader", "vae", vae_name=vae)
    vace = g.node("WanVaceToVideo", "vace", positive=g.lookup_node("pos").out(0), negative=g.lookup_node("neg").out(0),
                  vae=vae_node.out(0), width=96, height=64, length=9, batch_size=1, strength=1.0)
    sample = g.lookup_node("sample")
    for name, slot in (("positive", 0), ("negative", 1), ("latent_image", 2)):
        sample.set_input(name, vace.out(slot))
    inspect(g, ksampler_like(g, "plain", sample))
    return g.finalize()


def test_guidance_on_a_vace_model(run_graph, tiny_vace, tiny_vae):
    """VACE's context blocks take the latent outside the DiT blocks: their weights must be
    cloned for the gradient pass ('Inference tensors cannot be saved for backward')."""
    r = run_graph(vace_graph(tiny_vace, tiny_vae, {"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05}))
    r.raise_for_error()
    assert type(r.output("model", 0).model.diffusion_model).__name__ == "VaceWanModel"
    (step,) = report(r)["steps"]
    assert step["losses"][-1] < step["losses"][0] and not torch.equal(samples(r), samples(r, "plain"))
    zero = run_graph(vace_graph(tiny_vace, tiny_vae, {"inner_steps": 4, "lr_start": 0.0, "lr_end": 0.0}))
    assert torch.equal(samples(zero.raise_for_error()), samples(zero, "plain"))


def test_torch_compile_model_with_guidance(run_graph, comfy, fastvmt_pack):
    """Core TorchCompileModel (inductor): sampling steps run compiled, guidance passes run the
    eager model (no recompiles per pass). With a zero learning rate the guided run equals the
    compiled plain run. A 2-block model keeps the compile short."""
    name = comfy.tiny_wan(num_layers=2)
    g = base_builder(name, block=1, steps=3, settings={"inner_steps": 4, "lr_start": 0.0, "lr_end": 0.0,
                                                       "guided_fraction": 0.34})
    compiled = g.node("TorchCompileModel", "compiled", model=g.lookup_node("model").out(0), backend="inductor")
    sample = g.lookup_node("sample")
    sample.set_input("model", compiled.out(0))
    inspect(g, ksampler_like(g, "plain", sample))
    r = run_graph(g.finalize()).raise_for_error()
    assert report(r)["n_guided"] == 1 and report(r)["steps"][0]["gradient_evaluations"] == 2
    assert torch.equal(samples(r), samples(r, "plain"))


def test_a_model_without_gradient_gets_an_error_naming_the_format_and_the_way_out(run_graph, tiny_wan):
    """A forward that drops autograd (here a test wrapper under torch.no_grad, as a format or
    kernel without backward would) stops at the first gradient pass with a clear error,
    not AdamW's 'element 0 of tensors does not require grad'."""
    g = base_builder(tiny_wan, settings=GUIDED)
    nograd = g.node("FastVMTTestNoGradModel", "nograd", model=g.lookup_node("model").out(0))
    g.lookup_node("sample").set_input("model", nograd.out(0))
    r = run_graph(g.finalize())
    assert not r.success and r.error_node == "sample", r.error_text()
    msg = r.exception_message
    assert "does not carry one" in msg and "weight_dtype 'default'" in msg and "float32" in msg, msg
