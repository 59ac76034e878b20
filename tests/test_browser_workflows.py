"""Every UI workflow in the real frontend of a real ComfyUI server, in headless Chromium.

Chromium comes from the OS packages (``apt-get install chromium``) and is driven by the
``playwright`` package with ``executable_path``; no browser is downloaded. The server is
ComfyUI's main.py with the pack (and the test nodes) in its custom_nodes folder. For
each workflow the test loads it with ``app.loadGraphData`` and asserts that the frontend
knows every node type, shows no missing-node-types dialog, and that its own ``graphToPrompt()``
gives the shipped API file: the UI-to-API conversion is the frontend's, not a copy.
"""

import json
import os
import shutil

import pytest

from tests.test_runner_host import PACK_DIR_NAME, _start_server, _stop_server
from tests.test_workflows import api_file_for, ui_files

import comfy_host

CHROMIUM = os.environ.get("FASTVMT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def frontend(comfy, fastvmt_pack, tmp_path_factory):
    """(page, server): a Chromium page on a real ComfyUI server with the pack loaded."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium (or set FASTVMT_CHROMIUM)")
    base = tmp_path_factory.mktemp("comfy_browser")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(comfy_host.REPO_ROOT, target_is_directory=True)
    server = _start_server(base)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://{server.address}/", wait_until="domcontentloaded")
            page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
            yield page, server
            browser.close()
    finally:
        _stop_server(server.proc)


def _load(page, ui: dict) -> dict:
    """Load a UI workflow; returns the frontend's API prompt and what it knows of the graph."""
    return page.evaluate("""async (workflow) => {
        await window.app.loadGraphData(workflow);
        const known = Object.keys(window.LiteGraph.registered_node_types);
        const missing = workflow.nodes.map(n => n.type).filter(t => !known.includes(t));
        const dialogs = [...document.querySelectorAll('[role="dialog"]')].map(d => d.innerText);
        const { output } = await window.app.graphToPrompt();
        return { output, missing, dialogs };
    }""", ui)


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_frontend_loads_the_workflow_and_converts_it_to_the_shipped_api_file(frontend, ui_path):
    page, server = frontend
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    got = _load(page, ui)
    assert not got["missing"], f"node types unknown to the frontend: {got['missing']}\n{server.log_tail()}"
    # (a "Missing Models" dialog is expected: no model files are placed here)
    assert not [d for d in got["dialogs"] if "missing node" in d.lower()], got["dialogs"]
    api = json.loads(api_file_for(ui_path).read_text(encoding="utf-8"))
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    assert strip(got["output"]) == strip(api)
    titles = {k: v.get("_meta", {}).get("title") for k, v in got["output"].items()}
    assert titles == {k: v.get("_meta", {}).get("title") for k, v in api.items()}
