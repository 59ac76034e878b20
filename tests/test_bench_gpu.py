"""`python -m bench.gpu`: the toy run through what bench/gpu_stage.sh stages and bench/gpu_run.sh
runs (as on a GPU machine without ComfyUI), a budget too small for the parts, and no CUDA.

The toy run boots ComfyUI in four processes (the main one and one per simulated card), so these
tests run real ComfyUI without the in-process ``comfy`` fixture; they carry its ``host`` marker."""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys

import pytest

import comfy_host

REPO = comfy_host.REPO_ROOT
pytestmark = pytest.mark.host
ROWS = ["plain (one step, 2 passes batched)", "FastVMT", "FastVMT, recomputed activations", "no skip (interval 1)",
        "released-code structure (exit after block 2)", "no early exit (whole DiT)",
        "full AMF (global flow, interval 1, whole DiT)"]


def _env(**extra) -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", **extra}  # the CPU path, on any machine


@pytest.fixture(scope="module")
def comfyui():
    path = comfy_host.find_comfyui()
    if path is None:
        msg = "ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI"
        if os.environ.get("FASTVMT_REQUIRE_COMFYUI", "").strip().lower() in ("1", "true", "yes", "on"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def toy(comfyui, tmp_path_factory):
    """Stage ComfyUI and the stand-in frontend (no wheels: no network in tests), then the toy run
    through bench/gpu_run.sh, so the staged ComfyUI, not the development one, is what boots."""
    tmp = tmp_path_factory.mktemp("gpu")
    stage = tmp / "stage"
    r = subprocess.run(["bash", str(REPO / "bench" / "gpu_stage.sh"), "--no-wheels", "--out", str(stage),
                        str(comfyui)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp / "gpu.json"
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_run.sh"), "--toy", "--json", str(out)],
                         capture_output=True, text=True, timeout=400,
                         env=_env(PYTHON=sys.executable, FASTVMT_GPU_STAGE=str(stage), FASTVMT_SITE=str(tmp / "site"),
                                  COMFYUI_PATH="/nonexistent"))
    return {"stage": stage, "run": run, "json": out, "stage_out": r.stdout}


def test_the_staged_folder_holds_comfyui_without_its_tests_and_a_frontend_stand_in(toy, comfyui):
    stage = toy["stage"]
    assert (stage / "ComfyUI" / "main.py").is_file() and (stage / "ComfyUI" / "comfy").is_dir()
    for left_out in ("tests", "tests-unit", "comfy_api_nodes"):
        assert (comfyui / left_out).exists() and not (stage / "ComfyUI" / left_out).exists(), left_out
    assert not any((stage / "ComfyUI" / "custom_nodes").iterdir())
    assert (stage / "stub" / "comfyui_frontend_package" / "static" / "index.html").is_file()
    size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    assert size < 25 * 2**20, f"staged ComfyUI is {size / 2**20:.0f} MiB"
    assert "staged " in toy["stage_out"] and "bench/gpu_run.sh --budget-s 480" in toy["stage_out"]


def test_toy_run_measures_every_part(toy):
    run = toy["run"]
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    res = json.loads(toy["json"].read_text())
    assert res["setup"]["comfyui_path"] == str((toy["stage"] / "ComfyUI").resolve())  # the staged one booted
    assert res["toy"] is True and res["setup"]["device"] == "cpu" and res["commit"]
    for part in ("per_step", "zero_lr", "end_to_end", "kernels", "cards"):
        assert "skipped" not in res[part] and "error" not in res[part], (part, res[part])
    log = toy["json"].with_suffix(".log").read_text()
    assert "== cards" in log and "zero learning rate == plain: True" in log


def test_per_step_rows_and_their_derived_totals(toy):
    table = json.loads(toy["json"].read_text())["per_step"]
    rows = {r["config"]: r for r in table["rows"]}
    assert list(rows) == ROWS
    plain = table["plain"]
    assert plain["step_s"] > 0 and plain["derived_50_steps_s"] == pytest.approx(50 * plain["step_s"])
    for name in ROWS[1:]:
        r = rows[name]
        assert len(r["guided_steps_s"]) == 2 and all(s > 0 for s in r["guided_steps_s"])
        assert r["guided_step_s"] == pytest.approx(statistics.mean(r["guided_steps_s"]))
        assert r["derived_50_steps_s"] == pytest.approx(50 * plain["step_s"] + 10 * r["guided_step_s"])
        assert r["x_plain"] == pytest.approx(r["derived_50_steps_s"] / plain["derived_50_steps_s"])
        assert r["peak_gib"] > 0
    assert "derived, not measured" in table["derived_note"]
    # the configurations are what their names say: gradient passes, kept or recomputed activations
    passes = {name: r["gradient_passes_per_step"] for name, r in rows.items() if name != ROWS[0]}
    assert passes == {name: 10 if "interval 1" in name else 4 for name in ROWS[1:]}
    assert rows["FastVMT"]["kept_blocks"] == rows["FastVMT"]["gradient_blocks"] > 0
    assert rows["FastVMT, recomputed activations"]["kept_blocks"] == 0
    assert all(r["weight_copies"] == 0 for name, r in rows.items() if name != ROWS[0])  # bf16: read in place
    assert rows["FastVMT"]["overrides"] == {} and rows[ROWS[4]]["overrides"] == {"exit_block": 2}


def test_zero_rate_end_to_end_and_kernels(toy):
    res = json.loads(toy["json"].read_text())
    zero = res["zero_lr"]
    assert zero["equal"] is True and zero["max_abs_diff"] == 0.0 and zero["guided_steps"] == 3
    assert zero["guided_max_abs_diff"] > 0  # the default rate does move the latent: the check can fail
    e2e = res["end_to_end"]
    assert e2e["steps"] == 10 and e2e["guided_steps"] == 2
    assert e2e["ratio"] == pytest.approx(e2e["fastvmt_s"] / e2e["plain_s"]) and e2e["ratio"] > 0
    rows = res["kernels"]["rows"]
    assert {(r["grid_name"], r["method"]) for r in rows} == {
        (g, m) for g in ("toy 4x6x8", "toy 4x9x12")
        for m in ("sliding_window_amf", "global_amf_same_span", "sdpa_same_span_float32")}
    assert all(r["median_s"] > 0 for r in rows)
    assert all(r["max_abs_diff_vs_global_amf"] < 1e-4 for r in rows if r["method"].startswith("sdpa"))


def test_each_card_ran_in_its_own_process_that_saw_the_card(toy):
    cards = json.loads(toy["json"].read_text())["cards"]["rows"]
    assert [c["card"] for c in cards] == ["1.3B on 8 GiB", "14B fp8 on 24 GiB", "14B fp8 on 16 GiB"]
    for c in cards:
        assert c["fits"] is True and c["exit"] == 0, c
        assert c["comfyui_imported_before_patch"] is False  # the patch precedes ComfyUI's model management
        assert c["mem_get_info_total_gib"] == c["cap_gib"]
        assert c["enforced"] is False  # a CPU: nothing to enforce
        assert c["guided_step_s"] > 0 and c["gradient_passes"] == 4
    assert "fp8" in cards[1]["layout"] and "bf16" in cards[0]["layout"]


def test_a_budget_too_small_skips_parts_and_still_writes_what_it_measured(tmp_path, comfyui):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-m", "bench.gpu", "--toy", "--budget-s", "4", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"skip part per_step: needs about \d+s, \d+s left of --budget-s 4\n", r.stdout), r.stdout
    assert "skip card 1.3B on 8 GiB: needs about" in r.stdout
    res = json.loads(out.read_text())
    for part in ("per_step", "zero_lr", "end_to_end"):
        assert "left of --budget-s 4" in res[part]["skipped"]
    assert all("skipped" in c for c in res["cards"]["rows"])
    assert len(res["kernels"]["rows"]) == 6  # cheap enough for what was left
    assert "started the 14B weight writer" not in r.stdout


def test_without_toy_it_needs_a_cuda_device(tmp_path):
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, "-m", "bench.gpu", "--json", str(out)], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env=_env())
    assert r.returncode == 2
    assert "no CUDA device" in r.stderr and "--toy" in r.stderr
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "bench.gpu", "--toy", "--budget-s", "0"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=_env())
    assert r.returncode == 2 and "--budget-s must be above 0" in r.stderr
