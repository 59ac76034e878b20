"""Guidance memory in real ComfyUI: keep_activations, the reservation before guidance (a
partly offloaded model, LoRA patches applied through ComfyUI's low-VRAM path), and the
estimator against measured peaks.

A small device is made by having ComfyUI's own ``get_free_memory`` report little free
memory; everything else (free_memory, partially_unload, load_models_gpu, the low-VRAM
weight patches) is ComfyUI's real model management on the CPU.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.graphs import BLOCK, GUIDED, base_graph, lora_graph, report, samples
from tests.helpers.synthetic import write_lora_and_merged

REPO = Path(__file__).resolve().parent.parent
SMALL_DEVICE = 64 * 2**20


@pytest.fixture
def small_device(comfy, monkeypatch):
    """ComfyUI sees a device with SMALL_DEVICE bytes free; models start unloaded."""
    import comfy.model_management as mm
    comfy.reset(unload_models=True)

    def get_free_memory(dev=None, torch_free_too=False):
        return (SMALL_DEVICE, SMALL_DEVICE) if torch_free_too else SMALL_DEVICE

    monkeypatch.setattr(mm, "get_free_memory", get_free_memory)
    yield
    monkeypatch.undo()
    comfy.reset(unload_models=True)


@pytest.mark.parametrize("keep", ["always", "never"])
def test_keeping_activations_gives_the_same_guided_result(run_graph, tiny_wan, keep):
    a = run_graph(base_graph(tiny_wan, settings={**GUIDED, "keep_activations": keep})).raise_for_error()
    b = run_graph(base_graph(tiny_wan, settings={**GUIDED, "keep_activations": "never" if keep == "always"
                                                 else "always"})).raise_for_error()
    # Kept: every block before the motion block (the early exit's gradient blocks).
    assert report(a)["memory"]["kept_blocks"] == (BLOCK if keep == "always" else 0)
    assert report(b)["memory"]["kept_blocks"] == (0 if keep == "always" else BLOCK)
    torch.testing.assert_close(report(a)["steps"][0]["losses"], report(b)["steps"][0]["losses"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(samples(a), samples(b), rtol=1e-5, atol=1e-6)


def test_auto_keeps_activations_when_the_estimate_fits(run_graph, tiny_wan):
    r = run_graph(base_graph(tiny_wan, settings=GUIDED)).raise_for_error()
    mem = report(r)["memory"]
    assert mem["kept_blocks"] == BLOCK and mem["estimate"] < mem["free_before"] and mem["offloaded"] == 0
    assert "memory: gradient pass about" in r.ui_output("sample")["text"][0]


def test_auto_recomputes_and_reserves_on_a_small_device(run_graph, comfy, tiny_wan, small_device, monkeypatch):
    """Short of memory: activations are recomputed, part of the loaded model is offloaded
    before guidance and loaded back after it, and the result is that of a full load."""
    r = run_graph(base_graph(tiny_wan, settings=GUIDED)).raise_for_error()
    mem = report(r)["memory"]
    assert mem["kept_blocks"] == 0 and mem["free_before"] == SMALL_DEVICE
    assert mem["offloaded"] > 0 and mem["restored"] == mem["offloaded"], mem
    monkeypatch.undo()  # a roomy device again: nothing is offloaded
    comfy.reset(unload_models=True)
    full = run_graph(base_graph(tiny_wan, settings={**GUIDED, "keep_activations": "never"})).raise_for_error()
    assert report(full)["memory"]["offloaded"] == 0
    torch.testing.assert_close(samples(r), samples(full), rtol=1e-5, atol=1e-6)


def test_lora_under_a_partial_low_vram_load_equals_the_merged_checkpoint(run_graph, comfy, tiny_wan, small_device):
    """The offloaded layers get the LoRA through ComfyUI's LowVramPatch on every call; the
    guided result still equals the merged checkpoint's."""
    lora_name, merged_name = write_lora_and_merged(comfy, tiny_wan)
    a = run_graph(lora_graph(tiny_wan, lora_name)).raise_for_error()
    mem = report(a)["memory"]
    assert mem["offloaded"] > 0, mem
    b = run_graph(base_graph(merged_name, settings=GUIDED)).raise_for_error()
    torch.testing.assert_close(report(a)["steps"][0]["losses"], report(b)["steps"][0]["losses"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(samples(a), samples(b), rtol=1e-4, atol=1e-5)


def test_estimate_is_within_30_percent_of_measured_peaks(tmp_path, comfy):
    """bench/memory.py in a fresh process: four model/latent sizes, activations kept and
    recomputed; the peak of live tensor bytes during the latent optimisation (profiler
    allocation events) against the Guidance Sampler's own estimate."""
    out = tmp_path / "memory.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "bench.memory", "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["measured"]
    assert len({(r["dim"], r["ffn_dim"], tuple(r["latent"])) for r in rows}) >= 4
    assert {r["keep_activations"] for r in rows} == {True, False}
    bad = [r for r in rows if not 0.7 <= r["ratio"] <= 1.3]
    assert not bad, bad
