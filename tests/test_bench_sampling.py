"""The sampling benchmark runs end to end (tiniest settings), so it cannot rot. Not timed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import comfy_host

REPO = Path(__file__).resolve().parent.parent


def test_sampling_benchmark_smoke(comfy, tmp_path):
    out = tmp_path / "sampling.json"
    env = {**os.environ, "COMFYUI_PATH": str(comfy_host.find_comfyui())}
    r = subprocess.run([sys.executable, "-m", "bench.sampling", "--smoke", "--repeats", "1", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = {row["config"]: row for row in res["configurations"]}
    assert list(rows) == ["plain", "FastVMT", "FastVMT, recomputed", "no skip", "no early exit",
                          "released-code structure", "full AMF"]
    # same result, other memory
    assert abs(rows["FastVMT, recomputed"]["final_loss"] - rows["FastVMT"]["final_loss"]) <= 1e-5 * abs(rows["FastVMT"]["final_loss"])
    # Block evaluations follow the arithmetic: per pass, motion block + 1 with early exit.
    fast = rows["FastVMT"]
    assert fast["block_evaluations"] == fast["dit_passes"] * 15
    assert rows["plain"]["block_evaluations"] == 0
    assert rows["no early exit"]["block_evaluations"] == rows["no early exit"]["dit_passes"] * 16
    assert "| FastVMT |" in r.stdout and "| interval | 1 |" in r.stdout


def test_schedules_benchmark_smoke(comfy, tmp_path):
    """`python -m bench.schedules --smoke`: the sampler table and the reference-noise table."""
    out = tmp_path / "schedules.json"
    env = {**os.environ, "COMFYUI_PATH": str(comfy_host.find_comfyui())}
    r = subprocess.run([sys.executable, "-m", "bench.schedules", "--smoke", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = {row["sampler"]: row for row in res["samplers"]}
    assert rows["euler"]["identical"] and rows["uni_pc"]["family"] == "Euler on guided steps"
    (ref,) = res["reference"]["summary"]
    assert ref["0.3"] > ref["1.0"]  # the clean end of the schedule carries more of the motion than pure noise
    assert "| uni_pc | Euler on guided steps |" in r.stdout
