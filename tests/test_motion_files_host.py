"""Motion files a user can trust, in the real executor: Load Motion resolves names only
inside the folders it lists, Save Motion never overwrites, damaged files get one named
error, and no guided run leaves state behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from comfy_host import GraphValidationError, pack_module
from tests.helpers.graphs import base_builder, base_graph, builder, inspect, latent_video_size, plain_graph

REPO = Path(__file__).resolve().parents[1]


def load_graph(name):
    g = builder()
    inspect(g, g.node("FastVMTLoadMotion", "load", motion_file=name), "out")
    return g.finalize()


def load_error(run_graph, name) -> str:
    """Load Motion's refusal of ``name``: at validation (unlisted names) or at execution."""
    try:
        r = run_graph(load_graph(name))
    except GraphValidationError as exc:
        return str(exc)
    assert not r.success, f"{name!r} loaded"
    return r.exception_message


def save_builder(tiny_wan, prefix, **kw):
    """The base graph's Extract Motion into Save Motion (no sampler)."""
    g = base_builder(tiny_wan, **kw)
    g.remove_node("sample")
    g.remove_node("out")
    g.node("FastVMTSaveMotion", "save", motion=g.lookup_node("motion").out(0), filename_prefix=prefix)
    return g


def save_graph(tiny_wan, prefix, **kw):
    return save_builder(tiny_wan, prefix, **kw).finalize()


def saved(result):
    return result.ui_output("save")["fastvmt_motion"][0]


# ---- Load Motion stays inside its folders ---------------------------------------------

def test_load_motion_refuses_names_outside_its_folders_with_one_text(run_graph, comfy, tiny_wan, fastvmt_pack,
                                                                       tmp_path):
    r = run_graph(save_graph(tiny_wan, "fastvmt/inside")).raise_for_error()
    real = comfy.output_dir / "fastvmt" / saved(r)["filename"]
    outside = tmp_path / "secret.safetensors"  # a real motion file, outside every folder
    outside.write_bytes(real.read_bytes())
    (comfy.base_dir / "not_a_motion.safetensors").write_bytes(b"x" * 64)
    exists = [str(outside), "../not_a_motion.safetensors", "../output/fastvmt/" + saved(r)["filename"],
              "fastvmt/../../not_a_motion.safetensors [output]", os.path.relpath(outside, comfy.input_dir)]
    missing = [str(tmp_path / "nothing.safetensors"), "../nothing.safetensors", "C:\\Windows\\x.safetensors",
               "fastvmt/../../nothing.safetensors [output]", "nothing.safetensors"]
    texts = set()
    for name in exists + missing:
        msg = load_error(run_graph, name)
        assert "is not one of the motion files Load Motion lists" in msg, msg
        start = msg.index("motion_file: ")
        texts.add(msg[start:msg.index("input folder", start)].replace(repr(name), "<name>"))
    assert len(texts) == 1  # no answer tells whether a path exists


def test_saved_motion_loads_from_the_output_folder_without_copying(run_graph, comfy, tiny_wan, fastvmt_pack):
    r = run_graph(save_graph(tiny_wan, "fastvmt/listed")).raise_for_error()
    name = f"fastvmt/{saved(r)['filename']} [output]"
    loaded = run_graph(load_graph(name)).raise_for_error().output("load", 0)
    assert torch.equal(loaded.latent, r.output("motion", 0).latent)


# ---- Save Motion never overwrites -------------------------------------------------------

def test_save_motion_never_overwrites(run_graph, comfy, tiny_wan, fastvmt_pack):
    names = []
    for _ in range(2):  # a prefix ending in "/" used to write the same file twice
        names.append(saved(run_graph(save_graph(tiny_wan, "fastvmt/trailing/")).raise_for_error())["filename"])
    assert names == ["motion_00001_.safetensors", "motion_00002_.safetensors"]
    folder = comfy.output_dir / "fastvmt" / "trailing"
    (folder / "motion_00007_.safetensors").write_bytes(b"someone else's file")
    third = saved(run_graph(save_graph(tiny_wan, "fastvmt/trailing/")).raise_for_error())["filename"]
    assert third == "motion_00008_.safetensors"
    assert (folder / "motion_00007_.safetensors").read_bytes() == b"someone else's file"


def test_motion_files_are_created_exclusively(comfy, fastvmt_pack, tmp_path):
    motion_mod = pack_module("nodes.motion")
    path = tmp_path / "taken.safetensors"
    path.write_bytes(b"keep me")
    motion = motion_mod.MotionReference(latent=torch.zeros(1, 16, 1, 2, 2), settings=motion_mod.FastVMTSettings(),
                                        conditioning=None, geometry={}, source="")
    with pytest.raises(FileExistsError):
        motion_mod.write_motion_file(motion, str(path))
    assert path.read_bytes() == b"keep me"


@pytest.mark.parametrize("prefix", ["../escape", "fastvmt/../../escape", "/tmp/escape", "C:\\escape", ""])
def test_save_motion_refuses_a_prefix_that_leaves_the_output_folder(run_graph, tiny_wan, fastvmt_pack, prefix):
    r = run_graph(save_graph(tiny_wan, prefix))
    assert not r.success and "filename_prefix" in r.exception_message
    assert "must be a relative name inside ComfyUI's output folder" in r.exception_message


# ---- one validation of the format -------------------------------------------------------

@pytest.fixture(scope="module")
def valid_file(comfy, tiny_wan, fastvmt_pack):
    """(metadata, tensors) of a real saved motion, with conditioning and a pooled output."""
    g = save_builder(tiny_wan, "fastvmt/fuzz_base")
    g.lookup_node("motion").set_input("conditioning", g.lookup_node("neg").out(0))
    from comfy_host import get_host
    r = get_host().run_graph(g.finalize()).raise_for_error()
    with safe_open(str(comfy.output_dir / "fastvmt" / saved(r)["filename"]), framework="pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    meta["conditioning"] = json.dumps([{"pooled": True}])
    tensors["conditioning.0.pooled"] = torch.randn(1, 32)
    return meta, tensors


def _drop(d, key):
    return {k: v for k, v in d.items() if k != key}


META_CASES = {  # case -> (metadata change, field named in the error)
    **{f"missing {k}": (lambda m, k=k: _drop(m, k), k)
       for k in ("format", "version", "settings", "geometry", "conditioning", "source")},
    **{f"{k} not JSON": (lambda m, k=k: {**m, k: "{not json"}, k) for k in ("settings", "geometry", "conditioning")},
    "settings a list": (lambda m: {**m, "settings": "[1, 2]"}, "settings"),
    "settings missing a field": (lambda m: {**m, "settings": json.dumps(_drop(json.loads(m["settings"]), "tau"))},
                                 "settings"),
    "settings wrong type": (lambda m: {**m, "settings": json.dumps({**json.loads(m["settings"]),
                                                                    "window": "big"})}, "settings"),
    "tile not two ints": (lambda m: {**m, "settings": json.dumps({**json.loads(m["settings"]), "tile": [2.5, 3]})},
                          "settings.tile"),
    "geometry a number": (lambda m: {**m, "geometry": "5"}, "geometry"),
    "geometry field wrong type": (lambda m: {**m, "geometry": json.dumps({**json.loads(m["geometry"]),
                                                                          "num_blocks": "16"})}, "geometry.num_blocks"),
    "conditioning an object": (lambda m: {**m, "conditioning": "{}"}, "conditioning"),
    "conditioning entry wrong": (lambda m: {**m, "conditioning": json.dumps([{"pooled": "yes"}])}, "conditioning[0]"),
    "version not a number": (lambda m: {**m, "version": "one"}, "version"),
    "missing image": (lambda m: _drop(m, "image"), "image"),
    "image not JSON": (lambda m: {**m, "image": "{not json"}, "image"),
    "image unknown kind": (lambda m: {**m, "image": json.dumps({"kind": "depth", "clip_vision": False})}, "image"),
    "image declares tensors it lacks": (lambda m: {**m, "image": json.dumps({"kind": "concat", "clip_vision": True})},
                                        "tensor 'image.clip_vision' is missing"),
    "other format": (lambda m: {**m, "format": "lora"}, "format"),
}

TENSOR_CASES = {  # case -> (tensors change, field named in the error)
    **{f"missing {k}": (lambda t, k=k: _drop(t, k), f"tensor '{k}'")
       for k in ("reference_latent", "conditioning.0", "conditioning.0.pooled")},
    **{f"{k} float16": (lambda t, k=k: {**t, k: t[k].half()}, f"tensor '{k}'")
       for k in ("reference_latent", "conditioning.0", "conditioning.0.pooled")},
    **{f"{k} wrong rank": (lambda t, k=k: {**t, k: t[k][0]}, f"tensor '{k}'")
       for k in ("reference_latent", "conditioning.0", "conditioning.0.pooled")},
    **{f"{k} empty": (lambda t, k=k: {**t, k: t[k][..., :0].contiguous()}, f"tensor '{k}'")
       for k in ("reference_latent", "conditioning.0", "conditioning.0.pooled")},
    **{f"{k} non-finite": (lambda t, k=k: {**t, k: t[k].clone().fill_(float("nan"))}, f"tensor '{k}'")
       for k in ("reference_latent", "conditioning.0", "conditioning.0.pooled")},
    "latent batch of two": (lambda t: {**t, "reference_latent": t["reference_latent"].repeat(2, 1, 1, 1, 1)},
                            "tensor 'reference_latent'"),
    "latent channels unlike geometry": (lambda t: {**t, "reference_latent": t["reference_latent"][:, :8].contiguous()},
                                        "tensor 'reference_latent'"),
    "extra tensor": (lambda t: {**t, "payload": torch.zeros(3)}, "tensor 'payload'"),
}


def _assert_named_error(run_graph, comfy, name, field):
    """Load Motion refuses the file with one MotionFileError naming it and the field."""
    r = run_graph(load_graph(name))
    assert not r.success and r.exception_type.endswith(".MotionFileError")
    msg = r.exception_message
    assert msg.startswith(f"motion file '{name}': ") and field in msg, msg
    assert str(comfy.base_dir) not in msg  # never the server's absolute path


def _write_fuzz_file(comfy, name, tensors, meta):
    (comfy.input_dir / "fuzz").mkdir(exist_ok=True)
    save_file(tensors, str(comfy.input_dir / name), metadata=meta)


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_damaged_metadata_gets_a_named_error(run_graph, comfy, valid_file, case):
    change, field = META_CASES[case]
    meta, tensors = valid_file
    name = f"fuzz/meta_{case.replace(' ', '_')}.safetensors"
    _write_fuzz_file(comfy, name, tensors, change(dict(meta)))
    _assert_named_error(run_graph, comfy, name, field)


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_damaged_tensors_get_a_named_error(run_graph, comfy, valid_file, case):
    change, field = TENSOR_CASES[case]
    meta, tensors = valid_file
    name = f"fuzz/tensor_{case.replace(' ', '_')}.safetensors"
    _write_fuzz_file(comfy, name, change(dict(tensors)), dict(meta))
    _assert_named_error(run_graph, comfy, name, field)


def test_version_1_files_still_load_as_text_to_video(run_graph, comfy, valid_file):
    meta, tensors = valid_file
    old = {k: v for k, v in meta.items() if k != "image"}
    old["version"] = "1"
    save_file(tensors, str(comfy.input_dir / "version_1.safetensors"), metadata=old)
    motion = run_graph(load_graph("version_1.safetensors")).raise_for_error().output("load", 0)
    assert motion.image is None and torch.equal(motion.latent, tensors["reference_latent"])


@pytest.fixture(scope="module")
def valid_i2v_file(comfy, fastvmt_pack):
    """(metadata, tensors) of a motion saved from a tiny Wan 2.1 I2V model: concat latent,
    mask and CLIP-vision tokens of the reference's first frame."""
    model = comfy.tiny_wan(in_dim=36, out_dim=16, model_type="i2v", dim=128, num_layers=3, ffn_dim=256)
    g = builder()
    unet = g.node("UNETLoader", "model", unet_name=model, weight_dtype="default")
    vae = g.node("VAELoader", "vae", vae_name=comfy.tiny_vae())
    vision = g.node("FastVMTTestClipVision", "vision", seed=0)
    frames = g.node("FastVMTTestImage", "frames", seed=12, frames=5, height=64, width=64)
    motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), images=frames.out(0), vae=vae.out(0),
                    clip_vision=vision.out(0), width=64, height=64, length=5, motion_block=1, temporal_span=1,
                    window=3, tile_rows=1, tile_cols=1, tau=1.0)
    g.node("FastVMTSaveMotion", "save", motion=motion.out(0), filename_prefix="fastvmt/i2v_base")
    r = comfy.run_graph(g.finalize()).raise_for_error()
    filename = saved(r)["filename"]
    with safe_open(str(comfy.output_dir / "fastvmt" / filename), framework="pt") as fh:
        meta, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}
    return meta, tensors, r.output("motion", 0), filename


def test_i2v_motion_round_trips(run_graph, valid_i2v_file):
    meta, tensors, motion, filename = valid_i2v_file
    assert json.loads(meta["image"]) == {"kind": "concat", "clip_vision": True}
    loaded = run_graph(load_graph(f"fastvmt/{filename} [output]")).raise_for_error().output("load", 0)
    a, b = motion.image, loaded.image
    assert b.kind == "concat"
    for field in ("mask", "concat_latent", "clip_vision"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert "image-to-video" in loaded.summary()


I2V_TENSOR_CASES = {  # case -> (tensors change, field named in the error)
    "mask of another size": (lambda t: {**t, "image.mask": t["image.mask"][..., :4].contiguous()},
                             "tensor 'image.mask'"),
    "mask above 1": (lambda t: {**t, "image.mask": t["image.mask"] * 2}, "tensor 'image.mask'"),
    "mask non-finite": (lambda t: {**t, "image.mask": t["image.mask"].clone().fill_(float("nan"))},
                        "tensor 'image.mask'"),
    "missing concat latent": (lambda t: _drop(t, "image.concat_latent"), "tensor 'image.concat_latent'"),
    "concat latent of another shape": (lambda t: {**t, "image.concat_latent": t["image.concat_latent"][:, :8]
                                                  .contiguous()}, "tensor 'image.concat_latent'"),
    "clip tokens of two images": (lambda t: {**t, "image.clip_vision": t["image.clip_vision"].repeat(2, 1, 1)},
                                  "tensor 'image.clip_vision'"),
    "clip tokens float16": (lambda t: {**t, "image.clip_vision": t["image.clip_vision"].half()},
                            "tensor 'image.clip_vision'"),
}


@pytest.mark.parametrize("case", sorted(I2V_TENSOR_CASES))
def test_damaged_i2v_tensors_get_a_named_error(run_graph, comfy, valid_i2v_file, case):
    change, field = I2V_TENSOR_CASES[case]
    meta, tensors, _, _ = valid_i2v_file
    name = f"fuzz/i2v_{case.replace(' ', '_')}.safetensors"
    _write_fuzz_file(comfy, name, change(dict(tensors)), dict(meta))
    _assert_named_error(run_graph, comfy, name, field)


@pytest.mark.parametrize("case", ["truncated", "png", "json", "empty"])
def test_unreadable_files_get_a_named_error(run_graph, comfy, valid_file, case, tmp_path):
    meta, tensors = valid_file
    good = tmp_path / "good.safetensors"
    save_file(tensors, str(good), metadata=meta)
    data = {"truncated": good.read_bytes()[:-100], "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
            "json": json.dumps({"format": "fastvmt-motion"}).encode(), "empty": b""}[case]
    name = f"fuzz/unreadable_{case}.safetensors"
    (comfy.input_dir / "fuzz").mkdir(exist_ok=True)
    (comfy.input_dir / name).write_bytes(data)
    _assert_named_error(run_graph, comfy, name, "not a readable .safetensors file")


def test_the_valid_base_file_loads(run_graph, comfy, valid_file):
    """The fuzz cases start from a file that loads: each failure is the mutation's."""
    meta, tensors = valid_file
    save_file(tensors, str(comfy.input_dir / "fuzz_base.safetensors"), metadata=meta)
    motion = run_graph(load_graph("fuzz_base.safetensors")).raise_for_error().output("load", 0)
    assert torch.equal(motion.conditioning[0][1]["pooled_output"], tensors["conditioning.0.pooled"])


@pytest.mark.parametrize("seed", range(4))
def test_save_then_load_round_trips(run_graph, comfy, tiny_wan, fastvmt_pack, seed):
    """Random sizes, extraction settings and conditioning: Load Motion returns what Save Motion got."""
    g_ = torch.Generator().manual_seed(seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g_))  # noqa: E731
    g = save_builder(tiny_wan, f"fastvmt/round_{seed}", frames=pick(1, 4))
    ref, motion = g.lookup_node("ref"), g.lookup_node("motion")
    height, width = 2 * pick(2, 6), 2 * pick(2, 6)
    ref.inputs.update(height=height, width=width)
    motion.inputs.update(**latent_video_size(16, ref.inputs["frames"], height, width))
    motion.inputs.update(motion_block=pick(0, 15), temporal_span=pick(1, 6), window=2 * pick(1, 10) + 1,
                         tile_rows=pick(1, 4), tile_cols=pick(1, 4), tau=round(0.1 + pick(0, 30) / 10, 2))
    if seed % 2:
        motion.set_input("conditioning", g.lookup_node("pos").out(0))
    r = run_graph(g.finalize()).raise_for_error()
    loaded = run_graph(load_graph(f"fastvmt/round_{seed}_00001_.safetensors [output]")).raise_for_error()
    a, b = r.output("motion", 0), loaded.output("load", 0)
    assert torch.equal(a.latent, b.latent) and a.latent.dtype == b.latent.dtype
    assert (a.settings, a.geometry, a.source) == (b.settings, b.geometry, b.source)
    assert (a.conditioning is None) == (b.conditioning is None)
    for (ta, ea), (tb, eb) in zip(a.conditioning or [], b.conditioning or []):
        assert torch.equal(ta.float(), tb) and ea.keys() == eb.keys()


# ---- no run leaves state behind ---------------------------------------------------------

PLAIN_SCRIPT = """
import tempfile, torch
import comfy_host
from tests.helpers.graphs import plain_graph
host = comfy_host.bootstrap(tempfile.mkdtemp())
host.require_pack()
r = host.run_graph(plain_graph(host.tiny_wan())).raise_for_error()
torch.save(r.output("plain", 0)["samples"], {out!r})
"""


@pytest.fixture(scope="module")
def fresh_plain(tmp_path_factory):
    """The plain run in a fresh ComfyUI process."""
    out = tmp_path_factory.mktemp("fresh") / "plain.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", PLAIN_SCRIPT.format(out=str(out))], check=True,
                   cwd=str(REPO), env=env, capture_output=True, timeout=600)
    return torch.load(out)


def _interrupt_mid_guidance(comfy, monkeypatch):
    comfy.interrupt_at_progress(monkeypatch, "sample", 3)  # inside the first guided step's inner loop


def _fail_inside_the_loss(comfy, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("injected failure inside the motion loss")
    monkeypatch.setattr(pack_module("nodes.wan.guided_step"), "flow_guidance_loss", boom)


@pytest.mark.parametrize("how", [_interrupt_mid_guidance, _fail_inside_the_loss], ids=["interrupt", "loss_error"])
def test_a_failed_guided_run_leaves_nothing_behind(run_graph, comfy, tiny_wan, fastvmt_pack, fresh_plain,
                                                   monkeypatch, how):
    comfy.reset()
    how(comfy, monkeypatch)
    failed = run_graph(base_graph(tiny_wan, steps=5))
    assert not failed.success
    monkeypatch.undo()
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    # The same loaded model (the loader's output is cached), then a plain KSampler.
    after = run_graph(plain_graph(tiny_wan), keep_cache=True).raise_for_error()
    assert "model" not in after.executed_nodes
    model = after.output("model", 0)
    assert "fastvmt" not in repr(model.wrappers)
    assert not model.model_options.get("transformer_options", {}).get("patches_replace")
    assert torch.equal(after.output("plain", 0)["samples"], fresh_plain)
