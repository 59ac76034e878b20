"""`python -m bench.train_shapes --preset v2` at toy size, inside real ComfyUI: the run
writes a checkpoint that UNETLoader loads as Wan 2.1 T2V, and a run stopped half-way and
continued with --resume ends exactly where an uninterrupted run ends (step count, loss
history and weights). A warm start (--init) begins at the given checkpoint's weights, and one of
another architecture is refused by name before training starts."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from bench import train_shapes

pytestmark = pytest.mark.host

TINY = ["--preset", "v2", "--steps", "4", "--batch", "1", "--frames", "2", "--size", "16", "--num-layers", "1",
        "--ffn-dim", "256", "--warmup", "1", "--init", "", "--save-every", "0", "--state-every", "1", "--log-every", "1"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def weights(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def test_v2_training_resumes_where_it_stopped_and_unetloader_loads_it(tmp_path, comfy, one_thread):
    whole, parts = tmp_path / "whole" / "m.safetensors", tmp_path / "parts" / "m.safetensors"
    train_shapes.main(TINY + ["--out", str(whole)])
    train_shapes.main(TINY + ["--out", str(parts), "--stop-at", "2"])
    assert not parts.exists() and train_shapes.state_path(parts).exists()
    with pytest.raises(SystemExit, match="lr"):
        train_shapes.main(TINY + ["--out", str(parts), "--resume", "--lr", "0.01"])
    with pytest.raises(SystemExit, match="steps"):
        train_shapes.main(TINY + ["--out", str(parts), "--resume", "--steps", "3"])
    train_shapes.main(TINY + ["--out", str(parts), "--resume"])

    meta_whole = json.loads(whole.with_suffix(".json").read_text())
    meta_parts = json.loads(parts.with_suffix(".json").read_text())
    assert [h["step"] for h in meta_parts["history"]] == [1, 2, 3, 4]
    assert [h["loss"] for h in meta_parts["history"]] == [h["loss"] for h in meta_whole["history"]]
    assert meta_parts["settings"]["data"] == "v2" and meta_parts["settings"]["size"] == 16
    assert "resume at step 2" in train_shapes.log_path(parts).read_text()
    a, b = weights(whole), weights(parts)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float16 for v in b.values())

    from comfy_execution.graph_utils import GraphBuilder
    name = "shapes_v2_smoke.safetensors"
    shutil.copyfile(parts, comfy.model_dir("diffusion_models") / name)
    g = GraphBuilder(prefix="")
    unet = g.node("UNETLoader", unet_name=name, weight_dtype="default")
    g.node("FastVMTTestInspect", value=unet.out(0))
    res = comfy.run_graph(g.finalize())
    res.raise_for_error()
    (model,) = res.output(unet.id)
    assert type(model.model.model_config).__name__ == "WAN21_T2V"
    assert model.model.diffusion_model.dim == 128 and len(model.model.diffusion_model.blocks) == 1


def test_v2_warm_start_begins_at_the_given_checkpoint(tmp_path, comfy, one_thread):
    first, warm = tmp_path / "first.safetensors", tmp_path / "warm.safetensors"
    train_shapes.main(TINY + ["--out", str(first), "--precision", "bf16"])
    # lr 0 and an EMA of an unchanged model: the written weights are the starting weights.
    train_shapes.main(TINY + ["--out", str(warm), "--init", str(first), "--steps", "1", "--lr", "0", "--lr-final", "0"])
    a, b = weights(first), weights(warm)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(SystemExit, match="--init .*--num-layers 2"):
        train_shapes.main(TINY + ["--out", str(tmp_path / "x.safetensors"), "--init", str(first), "--num-layers", "2"])
