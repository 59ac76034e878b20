"""The two motion-file example workflows chain as shipped: 'extract and save' writes
output/fastvmt/motion_00001_.safetensors, and 'reuse saved motion' loads it under the name
Load Motion lists for it ("fastvmt/motion_00001_.safetensors [output]"), with no copying,
then generates its three videos. Both run in ComfyUI's real executor, on the tiny models."""
from __future__ import annotations

import shutil

import pytest
import torch

from comfy_host import pack_module
from tests.helpers.shipped import node_ids, tiny_api
from tests.helpers.workflows import WORKFLOW_DIR, load_builder

SAVE = "fastvmt_wan21_t2v_extract_and_save_motion"
REUSE = "fastvmt_wan21_t2v_reuse_saved_motion"


@pytest.fixture
def fresh_folders(comfy, tmp_path, monkeypatch):
    """ComfyUI's input/ and output/ empty for this test, as in a fresh install (the shipped
    name motion_00001_ is the first save's); the session's folders come back afterwards."""
    import folder_paths
    for name in ("input", "output"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(folder_paths, "input_directory", str(tmp_path / "input"))
    monkeypatch.setattr(folder_paths, "output_directory", str(tmp_path / "output"))
    return tmp_path


def test_the_reuse_workflow_loads_what_the_save_workflow_wrote(run_graph, tiny_wan, tiny_vae, fastvmt_pack,
                                                               fresh_folders):
    b = load_builder()
    shutil.copyfile(WORKFLOW_DIR / "input" / b.SELFTEST_VIDEO, fresh_folders / "input" / b.REFERENCE_VIDEO)
    save = tiny_api(SAVE, unet=tiny_wan, vae=tiny_vae)
    (extract_id,), (save_id,) = node_ids(save, "FastVMTExtractMotion"), node_ids(save, "FastVMTSaveMotion")
    saved = run_graph(save).raise_for_error()
    assert saved.ui_output(save_id)["fastvmt_motion"] == [
        {"filename": "motion_00001_.safetensors", "subfolder": "fastvmt", "type": "output"}]
    assert (fresh_folders / "output" / "fastvmt" / "motion_00001_.safetensors").is_file()

    reuse = tiny_api(REUSE, unet=tiny_wan, vae=tiny_vae)
    (load_id,) = node_ids(reuse, "FastVMTLoadMotion")
    # the shipped name is the one Load Motion lists for the saved file: no copy into input/
    assert reuse[load_id]["inputs"]["motion_file"] == b.SAVED_MOTION
    assert pack_module("nodes.fastvmt_nodes").motion_files() == [b.SAVED_MOTION]
    reused = run_graph(reuse).raise_for_error()
    assert torch.equal(reused.output(load_id, 0).latent, saved.output(extract_id, 0).latent)
    videos = sorted(p.name for p in (fresh_folders / "output" / "video").glob("*.mp4"))
    assert videos == ["fastvmt_a_00001_.mp4", "fastvmt_b_00001_.mp4", "fastvmt_c_00001_.mp4"]
    for sampler in node_ids(reuse, "FastVMTGuidanceSampler"):
        assert "fastvmt_report" in reused.ui_output(sampler)
