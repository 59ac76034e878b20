"""The README, read as a new user reads it.

Every shell command in the code blocks of the README, CONTRIBUTING.md and docs/ must be run
by a test or by ``.ci/run``;
``COVERED_BY`` says where, and a command nobody runs fails here. The install block is run
here as written (clone into a ``custom_nodes`` folder, ``pip install -r``), and the cloned
pack is then loaded by real ComfyUI in a fresh process.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import comfy_host

REPO = comfy_host.REPO_ROOT
README = REPO / "README.md"

# README command (its start) -> what runs it
COVERED_BY = {
    "cd ComfyUI/custom_nodes": "tests/test_readme.py::test_install_block_as_written",
    "git clone": "tests/test_readme.py::test_install_block_as_written",
    "pip install -r": "tests/test_readme.py::test_install_block_as_written",
    "python fastvmt_runner.py": "tests/test_runner_host.py::test_headless_run_writes_the_video",
    "python fastvmt_runner.py --selftest":
        "tests/test_runner_host.py::test_selftest_prints_both_scores_and_writes_the_side_by_side_video",
    "python -m fastvmt_runner": "tests/test_runner_host.py::test_the_runner_runs_by_path_from_anywhere_and_as_a_module",
    "python fastvmt_runner.py --batch":
        "tests/test_batch_runner_host.py::test_ctrl_c_stops_the_batch_and_the_rerun_does_each_job_once",
    "python -m bench.soak": "tests/test_soak_host.py::test_soak_command_runs",
    "python -m pytest tests": ".ci/run",
    "python -m bench.amf": "tests/test_core_standalone.py::test_amf_benchmark_command_runs",
    "python -m bench.sampling": "tests/test_bench_sampling.py",
    "python -m bench.schedules": "tests/test_bench_sampling.py::test_schedules_benchmark_smoke",
    "python -m bench.quality --check-model":
        "tests/test_check_model_host.py::test_check_finds_motion_only_in_the_block_whose_attention_matches_tokens",
    "python -m bench.quality": "tests/test_quality_host.py::test_quality_command_runs",
    "python -m bench.reference_sigma":
        "tests/test_quality_host.py::test_reference_sigma_command_pairs_every_option_with_no_transfer",
    "python -m bench.train_shapes": "tests/test_quality_host.py::test_training_command_runs",
    "python -m bench.i2v": "tests/test_i2v_bench_host.py::test_i2v_command_runs",
    "python -m bench.controls": "tests/test_bench_controls_host.py::test_controls_command_runs",
    "python -m bench.fidelity_ranking": "tests/test_fidelity_host.py::test_ranking_command_on_clips_with_known_motion",
    "python -m bench.demo": "tests/test_quality_host.py::test_demo_command_writes_the_clips_and_transfers_the_motion",
    "python -m bench.gpu": "tests/test_bench_gpu.py::test_toy_run_measures_every_part",
    "bench/gpu_stage.sh": "tests/test_bench_gpu.py::test_the_staged_folder_holds_comfyui_without_its_tests_and_a_frontend_stand_in",
    "bash bench/gpu_run.sh": "tests/test_bench_gpu.py::test_toy_run_measures_every_part",
}


# the README and the pages its depth moved to: their commands are held to the same rule
DOC_PAGES = [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def readme_commands(page=README) -> list[str]:
    """Shell commands of a page's fenced code blocks (continuation lines joined, comments
    dropped; ```bat blocks, for Windows, are not shell)."""
    text = page.read_text(encoding="utf-8")
    cmds = []
    for lang, block in re.findall(r"```([a-z]*)\n(.*?)```", text, flags=re.S):
        if lang not in ("", "bash", "sh", "shell"):  # e.g. the ```text layout map
            continue
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                cmds.append(" ".join(line.split()))
    return cmds


def test_every_readme_command_is_run_somewhere():
    cmds = readme_commands()
    assert any(c.startswith("python -m pytest tests") for c in cmds), "the README lost its test command"
    assert any(c.startswith("python fastvmt_runner.py") for c in cmds), "the README lost its runner command"
    uncovered = [f"{page.relative_to(REPO)}: {c}" for page in DOC_PAGES for c in readme_commands(page)
                 if not any(c.startswith(k) for k in COVERED_BY)]
    assert not uncovered, f"commands in the README or docs that no test or CI step runs: {uncovered}"
    ci = (REPO / ".ci" / "run").read_text()
    assert "python -m pytest tests" in ci, ".ci/run must call the README's test command"
    for where in set(COVERED_BY.values()):
        path = REPO / where.split("::")[0]
        assert path.is_file(), f"{where} is named as covering a README command but does not exist"
        if "::" in where:
            assert f"def {where.split('::')[1]}(" in path.read_text(), f"{where} does not exist"


def _install_block() -> list[str]:
    cmds = readme_commands()
    start = next(i for i, c in enumerate(cmds) if c.startswith("cd ComfyUI/custom_nodes"))
    return cmds[start:start + 3]


@pytest.mark.host
def test_install_block_as_written(tmp_path, comfy):
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout of this repository and git")
    cd, clone, pip = _install_block()
    url = re.search(r'^Repository = "(.+)"', (REPO / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert cd == "cd ComfyUI/custom_nodes" and clone.startswith(f"git clone {url} "), \
        f"the README's clone line must use the repository URL of pyproject.toml ({url})"
    assert pip.startswith("pip install -r ")
    work = tmp_path / "ComfyUI" / "custom_nodes"
    work.mkdir(parents=True)
    dest = clone.split()[-1]
    # the URL stands for this checkout: what the user clones is what was committed
    subprocess.run(["git", "clone", "-q", str(REPO), dest], cwd=work, check=True)
    r = subprocess.run([sys.executable, "-m", *pip.split()], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, f"{pip} failed:\n{r.stdout}\n{r.stderr}"
    pack = work / dest
    # run in the clone (its folder is sys.path[0]): its own fastvmt_core and test host are used
    code = (
        "import sys, comfy_host;"
        "host = comfy_host.bootstrap(load_pack=False);"
        "ok, names, msg = host._load_custom_node(__import__('pathlib').Path(sys.argv[1]), 'clone');"
        "print('LOADED' if ok else 'FAILED', ' '.join(names)); print(msg)"
    )
    # The clone's parent is a stand-in ComfyUI folder, so its locator would not find the host
    # this session found (through COMFYUI_PATH, this checkout's parent or ~/comfy/ComfyUI): name it.
    env = {**os.environ, "COMFYUI_PATH": str(comfy.comfyui_path)}
    r = subprocess.run([sys.executable, "-c", code, str(pack)], cwd=pack, env=env, capture_output=True, text=True,
                       timeout=300)
    assert "LOADED" in r.stdout, f"the cloned pack did not load in ComfyUI:\n{r.stdout}\n{r.stderr[-3000:]}"
    for node in ("FastVMTExtractMotion", "FastVMTGuidanceSampler", "FastVMTStepSkipSettings"):
        assert node in r.stdout, f"{node} not registered by the cloned pack:\n{r.stdout}"
