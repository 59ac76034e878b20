"""``python -m bench.soak``, small: six jobs of the batch runner on two real ComfyUI
servers, with an interrupt inside a guided step, a server killed mid-job and started again,
model unloads and a memory reservation that must offload. Its report must show every job
done exactly once, none lost, no FastVMT patch left on the models, the interrupt honoured
and the re-run outputs equal. The 100-run figures are in docs/batch.md."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import comfy_host


def test_soak_command_runs(tmp_path):
    if comfy_host.find_comfyui() is None:
        if os.environ.get("FASTVMT_REQUIRE_COMFYUI", "").strip().lower() in ("1", "true", "yes", "on"):
            pytest.fail("ComfyUI not found: set COMFYUI_PATH")
        pytest.skip("ComfyUI not found")
    r = subprocess.run([sys.executable, "-m", "bench.soak", "--runs", "6", "--alone", "2", "--out", str(tmp_path)],
                       cwd=comfy_host.REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "soak_report.json").read_text())
    s = report["summary"]
    assert (s["done"], s["failed"], s["lost"]) == (6, 0, 0)
    assert s["manifest"] == {"done_once": 6, "done_twice": 0, "never_done": 0}
    assert s["interrupts"] == 1 and s["interrupts_honoured"] == 1, report["interrupts"]
    assert s["kill"].get("seconds_to_done_elsewhere") is not None, s["kill"]
    assert s["leftovers_max"] == 0 and s["leftover_probes"] >= 6
    assert s["reservation_log_lines"]["a"]["offloaded"] >= 1, s["reservation_log_lines"]
    assert len(report["alone"]) >= 2 and all(row.get("equal") for row in report["alone"]), report["alone"]
    assert "verdict" in r.stdout and "ok" in r.stdout.splitlines()[-1]
