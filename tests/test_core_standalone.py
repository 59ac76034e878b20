"""fastvmt_core stands alone (no ComfyUI import), and the kernel benchmark on it runs."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_core_imports_no_comfyui():
    code = ("import sys, fastvmt_core, fastvmt_core.fidelity, fastvmt_core.cotracker; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'comfy', 'comfy_api', 'nodes', 'folder_paths', 'execution', 'comfy_extras'}); "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_amf_benchmark_command_runs(tmp_path):
    out = tmp_path / "amf.json"
    r = subprocess.run([sys.executable, "-m", "bench.amf", "--sizes", "tiny", "--repeats", "1",
                        "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| tiny 4x6x8, D 16 | sliding window" in r.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {row["method"] for row in rows} == {"sliding", "global_span", "global_all"}
    assert all(row["median_s"] > 0 for row in rows)
