"""Gradient passes in real ComfyUI: weights are read in place (no per-pass copies), and
``keep_activations`` auto keeps as many blocks as the free memory holds."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.helpers.graphs import BLOCK, GUIDED, base_builder, base_graph, report, samples

_COPY_OPS = {torch.ops.aten.clone.default, torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}


class _WeightCopyCounter(TorchDispatchMode):
    """Counts copies made *from* the model's weights (by storage), whatever code makes them."""

    def __init__(self, weight_storages: set):
        super().__init__()
        self.storages, self.copies, self.ops = weight_storages, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if func in _COPY_OPS:
            src = args[1] if func is torch.ops.aten.copy_.default else args[0]
            if isinstance(src, torch.Tensor) and src.untyped_storage().data_ptr() in self.storages:
                self.copies += 1
        return func(*args, **(kwargs or {}))


def _loaded_weight_storages(comfy) -> set:
    import comfy.model_management as mm
    return {p.untyped_storage().data_ptr() for m in mm.current_loaded_models if m.model is not None
            for p in m.model.model.parameters() if p.numel() > 1}


@pytest.mark.parametrize("keep", ["never", "always"])
def test_gradient_passes_copy_no_weight(run_graph, comfy, tiny_wan, keep):
    g = base_builder(tiny_wan, settings={**GUIDED, "keep_activations": keep})
    run_graph(g.finalize()).raise_for_error()     # loads the model, so its weights can be told apart
    counter = _WeightCopyCounter(_loaded_weight_storages(comfy))
    assert counter.storages
    g.lookup_node("sample").set_input("seed", 8)  # the sampler runs again on the same loaded model
    with counter:
        r = run_graph(g.finalize(), keep_cache=True).raise_for_error()
    rep = report(r)
    assert sum(e["gradient_evaluations"] for e in rep["steps"]) > 0
    assert counter.ops > 0 and counter.copies == 0 and rep["weight_copies"] == 0
    assert "weights read in place" in r.ui_output("sample")["text"][0]


def test_auto_keeps_as_many_blocks_as_fit(run_graph, comfy, tiny_wan, monkeypatch):
    """With free memory for one kept block but not for all, auto keeps the activations of
    the first block and recomputes the rest; the guided result is the same as either way."""
    import comfy.model_management as mm
    from comfy_host import pack_module
    from fastvmt_core import FastVMTSettings, gradient_pass_memory
    never = run_graph(base_graph(tiny_wan, settings={**GUIDED, "keep_activations": "never"})).raise_for_error()
    always = run_graph(base_graph(tiny_wan, settings={**GUIDED, "keep_activations": "always"})).raise_for_error()
    assert report(always)["memory"]["kept_blocks"] == BLOCK
    base_model = next(m.model.model for m in mm.current_loaded_models if m.model is not None)
    geometry = pack_module("nodes.wan.memory_plan").pass_geometry(base_model, samples(never).shape)
    one = gradient_pass_memory(geometry, FastVMTSettings(motion_block=BLOCK), kept_blocks=1).total
    assert report(never)["memory"]["estimate"] < one < report(always)["memory"]["estimate"]
    free = one + mm.extra_reserved_memory()
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False:
                        (free, free) if torch_free_too else free)
    part = run_graph(base_graph(tiny_wan, settings=GUIDED)).raise_for_error()
    mem = report(part)["memory"]
    assert mem["kept_blocks"] == 1 and mem["estimate"] == one and mem["offloaded"] == 0, mem
    assert f"kept in 1 of {BLOCK} blocks" in part.ui_output("sample")["text"][0]
    torch.testing.assert_close(samples(part), samples(never), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(samples(part), samples(always), rtol=1e-5, atol=1e-6)
