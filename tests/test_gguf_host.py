"""GGUF models loaded with city96's ComfyUI-GGUF ("Unet Loader (GGUF)"), in the real executor.

The pack is found like ComfyUI (comfy_host.find_gguf_pack: $COMFYUI_GGUF_PATH, else
<ComfyUI>/custom_nodes/ComfyUI-GGUF) and loaded with ComfyUI's own load_custom_node.
Tiny Wan GGUF files are written here with the ``gguf`` package: every 2D weight in one
quant type (Q8_0, or Q4_K through the small packer below, since gguf-py only dequantises
K-quants), the rest F32 as ComfyUI-GGUF's converter leaves them. The guided run must equal
the one on a safetensors file holding the weights as the pack dequantises them (its Q8_0
math runs in fp16, so gguf-py's float32 decoding is not quite the same model).
"""

import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from comfy_host import PackLoadError
from tests.helpers.graphs import base_builder, base_graph, replace_node, report, samples

gguf = pytest.importorskip("gguf", reason="the gguf package (requirements-dev.txt) writes the test files")

SETTINGS = {"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05}


@pytest.fixture(scope="module")
def gguf_pack(comfy, fastvmt_pack):
    try:
        return comfy.load_gguf_pack()
    except PackLoadError as exc:
        pytest.skip(str(exc))


def _q4_k_blocks(w: np.ndarray) -> np.ndarray:
    """Q4_K bytes for rows of ``w`` (row length a multiple of 256): per 256-value super-block
    fp16 d and dmin, twelve bytes of 6-bit sub-block scales and mins, 128 bytes of nibbles;
    a value is d * scale_j * q - dmin * min_j."""
    rows, cols = w.shape
    sub = w.reshape(-1, 8, 32).astype(np.float32)               # super-blocks x 8 sub-blocks x 32
    lo = np.minimum(sub.min(axis=2), 0.0)                        # offsets are subtracted: mins <= 0
    step = np.maximum((sub.max(axis=2) - lo) / 15.0, 1e-12)
    d = (step.max(axis=1) / 63.0).astype(np.float16)
    dmin = (np.maximum(-lo.min(axis=1), 1e-12) / 63.0).astype(np.float16)
    d32, dmin32 = np.maximum(d.astype(np.float32), 1e-12), np.maximum(dmin.astype(np.float32), 1e-12)
    sc = np.clip(np.rint(step / d32[:, None]), 1, 63).astype(np.uint8)
    mn = np.clip(np.rint(-lo / dmin32[:, None]), 0, 63).astype(np.uint8)
    scale = d32[:, None, None] * sc[:, :, None]
    q = np.clip(np.rint((sub + dmin32[:, None, None] * mn[:, :, None]) / scale), 0, 15).astype(np.uint8)
    packed = np.empty((len(d), 12), dtype=np.uint8)
    packed[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = (mn[:, :4] & 63) | ((mn[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 15) | ((mn[:, 4:] & 15) << 4)
    pairs = q.reshape(-1, 4, 2, 32)                              # sub-blocks 2i (low nibble), 2i+1 (high)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128)
    blocks = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qs], 1)
    return blocks.reshape(rows, -1)


def _quantize(w: np.ndarray, qtype):
    if qtype == gguf.GGMLQuantizationType.Q4_K:
        return _q4_k_blocks(w)
    return gguf.quants.quantize(w, qtype)


def write_tiny_wan_gguf(sd: dict, path, qtype) -> None:
    """Write ``sd`` as a GGUF file (architecture "wan")."""
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    writer = gguf.GGUFWriter(str(path), arch="wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(int(qtype))
    for key, t in sd.items():
        w = t.float().numpy()
        if w.ndim == 2 and w.shape[1] % block == 0:
            raw = _quantize(w, qtype)
            writer.add_tensor(key, raw, raw_dtype=qtype)
        else:
            if w.ndim > 4:  # GGUF holds at most 4 dims: flatten, record the shape as the converter does
                writer.add_array(f"comfy.gguf.orig_shape.{key}", [int(n) for n in w.shape])
                w = w.reshape(w.shape[0], -1)
            writer.add_tensor(key, np.ascontiguousarray(w), raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _pack_dequantise(module) -> dict:
    """The module's weights as ComfyUI-GGUF's own dequantize_tensor computes them."""
    (dequant,) = [m for name, m in sys.modules.items() if name.endswith("ComfyUI-GGUF.dequant")]
    return {name: dequant.dequantize_tensor(p, torch.float32).reshape(p.shape).contiguous()
            for name, p in module.named_parameters()}


@pytest.fixture(scope="module")
def tiny_wan_gguf(comfy, tiny_wan, gguf_pack):
    """qtype name -> GGUF file name (the tiny Wan's weights)."""
    sd = load_file(comfy.model_dir("diffusion_models") / tiny_wan)
    files = {}
    for qtype in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_K):
        files[qtype.name] = f"fastvmt_tiny_wan_{qtype.name.lower()}.gguf"
        write_tiny_wan_gguf(sd, comfy.model_dir("diffusion_models") / files[qtype.name], qtype)
    comfy.refresh_file_lists()
    return files


def test_q4_k_packer_round_trips_through_gguf_py():
    """The test's own Q4_K writer produces blocks gguf-py decodes to nearly the input."""
    w = np.random.default_rng(0).normal(0, 0.05, (4, 512)).astype(np.float32)
    back = gguf.quants.dequantize(_q4_k_blocks(w), gguf.GGMLQuantizationType.Q4_K)
    assert back.shape == w.shape and np.abs(back - w).max() < 0.25 * np.abs(w).max()


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K"])
def test_guided_result_on_gguf_equals_the_dequantised_weights(run_graph, comfy, tiny_wan_gguf, qtype):
    """Weights loaded by ComfyUI-GGUF are inference tensors whose clone()/detach() return
    themselves; its layers dequantise into a fresh tensor on every call, which is what lets
    autograd through. Losses and the guided latent match the dequantised safetensors model."""
    gguf_name = tiny_wan_gguf[qtype]
    g = base_builder(gguf_name, settings=SETTINGS)
    replace_node(g, "model", "UnetLoaderGGUF", unet_name=gguf_name)
    a = run_graph(g.finalize()).raise_for_error()
    dm = a.output("model", 0).model.diffusion_model
    assert type(dm.blocks[0].ffn[0].weight).__name__ == "GGMLTensor"
    assert dm.blocks[0].ffn[0].weight.tensor_type.name == qtype
    deq_name = f"fastvmt_tiny_wan_{qtype.lower()}_dequantised.safetensors"
    save_file(_pack_dequantise(dm), str(comfy.model_dir("diffusion_models") / deq_name))
    comfy.refresh_file_lists()
    b = run_graph(base_graph(deq_name, settings=SETTINGS)).raise_for_error()
    (step_a,), (step_b,) = report(a)["steps"], report(b)["steps"]
    assert step_a["losses"][-1] < step_a["losses"][0]
    torch.testing.assert_close(step_a["losses"], step_b["losses"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(samples(a), samples(b), rtol=1e-4, atol=1e-5)
