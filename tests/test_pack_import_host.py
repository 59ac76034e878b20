"""What ComfyUI's log says when the pack cannot be imported: a missing dependency is named
with the command that installs it; a broken import inside the pack is logged with its
traceback as the bug it is, never blamed on a dependency.

The pack (or a copy with a broken import) is loaded by ComfyUI's ``load_custom_node`` in a
fresh process, as ComfyUI loads custom nodes at start-up."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import comfy_host

REPO = comfy_host.REPO_ROOT
MISSING_DEPENDENCY = "missing dependency safetensors: pip install -r requirements.txt"
BUG = "an import inside the pack failed"

# Loads each case's folder in one ComfyUI process; prints {case: what the FastVMT logger wrote}.
# "missing_dependency": the real pack with safetensors made unimportable (None in sys.modules
# raises ModuleNotFoundError with that name, as an uninstalled package does).
LOADER = """
import io, json, logging, pathlib, sys
import comfy_host
host = comfy_host.bootstrap(load_pack=False)
out = {}
for case, folder in json.loads(sys.argv[1]).items():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger("FastVMT").addHandler(handler)
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules)
              if case == "missing_dependency" and name.split(".")[0] == "safetensors"}
    if hidden:
        sys.modules["safetensors"] = None
    try:
        ok, names, _ = host._load_custom_node(pathlib.Path(folder), case)
    finally:
        sys.modules.pop("safetensors", None)
        sys.modules.update(hidden)
        logging.getLogger("FastVMT").removeHandler(handler)
    out[case] = {"loaded": bool(names), "log": buf.getvalue()}
print("RESULT " + json.dumps(out))
"""

BROKEN = {  # case -> the line put first in the copy's nodes/__init__.py
    "missing_internal_module": "from .no_such_module import helper  # noqa\n",
    "missing_internal_name": "from .fastvmt_nodes import NO_SUCH_NAME  # noqa\n",
}


def _broken_copy(root, case):
    """The pack's __init__.py and nodes/ (its fastvmt_core is the checkout's, on sys.path)
    with one import of nodes/__init__.py broken."""
    dest = root / f"ComfyUI-FastVMT-{case}"
    dest.mkdir()
    shutil.copy2(REPO / "__init__.py", dest / "__init__.py")
    shutil.copytree(REPO / "nodes", dest / "nodes", ignore=shutil.ignore_patterns("__pycache__"))
    init = dest / "nodes" / "__init__.py"
    text = init.read_text("utf-8")
    head, _, rest = text.partition('"""\n\n')  # after the module docstring
    init.write_text(f'{head}"""\n\n{BROKEN[case]}{rest}', encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def load_logs(comfy, tmp_path_factory):
    root = tmp_path_factory.mktemp("pack_copies")
    cases = {"missing_dependency": str(REPO), **{case: str(_broken_copy(root, case)) for case in BROKEN}}
    env = {**os.environ, "COMFYUI_PATH": str(comfy.comfyui_path)}
    r = subprocess.run([sys.executable, "-c", LOADER, json.dumps(cases)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, f"the loader did not finish:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(line[len("RESULT "):])


def test_a_missing_dependency_is_named_with_the_install_command(load_logs):
    res = load_logs["missing_dependency"]
    assert not res["loaded"]
    assert MISSING_DEPENDENCY in res["log"], res["log"]
    assert BUG not in res["log"] and "Traceback" not in res["log"]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_import_inside_the_pack_is_reported_as_a_bug_with_its_traceback(load_logs, case):
    res = load_logs[case]
    assert not res["loaded"]
    log = res["log"]
    assert BUG in log and "This is a bug in FastVMT, not a missing dependency" in log, log
    assert "Traceback (most recent call last)" in log and "nodes/__init__.py" in log, log
    assert ("no_such_module" if case == "missing_internal_module" else "NO_SUCH_NAME") in log
    assert "nodes not loaded: missing dependency" not in log and "pip install" not in log
