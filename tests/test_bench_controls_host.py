"""The motion-controls benchmark (bench/controls.py) at its smoke settings, inside the test
session's ComfyUI. What a user relies on: a generation mask confines the changed motion to
its region (the latent outside is left as plain sampling leaves it, up to what the later
sampler steps mix in), and `camera` on a reference whose camera does not move says so in
the run summary. The full table comes from ``python -m bench.controls`` (docs/quality.md,
"Motion controls")."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def smoke(comfy, fastvmt_pack, tmp_path_factory):
    from bench import controls
    out = tmp_path_factory.mktemp("controls_bench") / "controls.json"
    return controls.cli(["--smoke", "--json", str(out)], host=comfy), out


def test_controls_command_runs(smoke):
    res, out = smoke
    from bench import controls
    saved = json.loads(out.read_text())
    assert {r["row"] for r in saved["known"]["summary"]} == set(controls.SMOKE_KNOWN_ROWS)
    assert {r["row"] for r in saved["shapes"]["summary"]} == {"no transfer", "camera"}
    assert all(r["kind"] == "pan + shape" for r in saved["known"]["runs"])


def test_generation_mask_confines_the_changed_motion(smoke):
    res, _ = smoke
    (masked,) = [r for r in res["known"]["runs"] if r["row"] == "all, left-half mask"]
    assert masked["change_left"] > 0.2
    assert masked["change_right"] < masked["change_left"] / 4


def test_camera_on_a_reference_without_camera_motion_warns(smoke):
    res, _ = smoke
    warned = {r["row"]: r["camera_warning"] for r in res["shapes"]["runs"]}
    assert warned == {"no transfer": False, "camera": True}
