"""What a ComfyUI user sees of the pack in the real frontend: node help pages and run summaries.

A real ComfyUI server (``main.py --cpu``) with the pack, the test nodes and a tiny random
Wan model, driven in headless Chromium (OS package, ``playwright`` with ``executable_path``;
no browser is downloaded), like tests/test_browser_workflows.py.

* Help pages. The frontend's node help panel (``NodeHelpService.fetchCustomNodeHelp`` in
  comfyui_frontend_package 1.27.10) takes the pack folder from the node's ``python_module``
  (``custom_nodes.<folder>``) and fetches ``/extensions/<folder>/docs/<node id>/<locale>.md``,
  then ``/extensions/<folder>/docs/<node id>.md``. ComfyUI serves ``/extensions/<folder>/``
  from the pack's ``WEB_DIRECTORY`` (web/), so the pages are web/docs/<node id>.md. The test
  follows that lookup over HTTP for every pack node in the live /object_info and checks that
  the page names every input and output; then it opens each page through the frontend's own
  help store and checks what the panel rendered.
* Run summaries. web/js/fastvmt.js shows a node's ``text`` UI output in a read-only box under
  the node. The test loads a small graph (Extract Motion on a random latent, Save Motion,
  Guidance Sampler with one guided step, Motion Fidelity on random frames), runs it from the
  page with ``app.queuePrompt``, and reads each node's box: it must hold exactly the text the
  server recorded in /history. A second run adds Load Motion of the saved file (the other
  nodes come from the cache): each node still has one box. ``graphToPrompt()`` and the
  workflow's ``widgets_values`` are the same before and after the runs (the box is never
  serialised).
"""

import json
import urllib.error
import urllib.request

import pytest

import comfy_host
from comfy_host import PACK_DIR_NAME
from fastvmt_core import FastVMTSettings
from tests.helpers.graphs import builder
from tests.helpers.workflows import load_example_module

CHROMIUM = load_example_module("render_thumbnails.py").find_chromium()
SUMMARY_WIDGET = "fastvmt_summary"  # the widget name in web/js/fastvmt.js
SUMMARY_NODES = {"FastVMTExtractMotion", "FastVMTGuidanceSampler", "FastVMTLoadMotion", "FastVMTSaveMotion",
                 "FastVMTMotionFidelity"}


@pytest.fixture(scope="module")
def ui(comfy, fastvmt_pack, tiny_wan, tmp_path_factory):
    """(page, server, errors): a Chromium page on a real ComfyUI server with the pack, the test
    nodes and the tiny Wan model; ``errors`` collects the page's uncaught errors raised in the
    pack's web extension (the frontend itself raises one while it loads its settings)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    if CHROMIUM is None:
        pytest.skip("no Chromium: apt-get install chromium (or set FASTVMT_CHROMIUM)")
    base = tmp_path_factory.mktemp("comfy_browser_ui")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(comfy_host.REPO_ROOT, target_is_directory=True)
    (base / "custom_nodes" / "fastvmt_test_nodes").symlink_to(comfy_host.TEST_NODES_DIR, target_is_directory=True)
    (base / "models" / "diffusion_models").mkdir(parents=True)
    (base / "models" / "diffusion_models" / tiny_wan).symlink_to(comfy.model_dir("diffusion_models") / tiny_wan)
    # a returning user: no "Get Started with a Template" dialog over the canvas
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
    server = comfy_host.start_server(base)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(exc.stack or str(exc))
                    if f"/extensions/{PACK_DIR_NAME}/" in (exc.stack or "") else None)
            page.goto(f"http://{server.address}/", wait_until="domcontentloaded")
            page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
            yield page, server, errors
            browser.close()
    finally:
        comfy_host.stop_server(server)


def _http(server, path):
    """(status, text) of a GET on the server."""
    try:
        with urllib.request.urlopen(f"http://{server.address}{path}", timeout=30) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, ""


def _help_markdown(server, node: dict, locale="en"):
    """(url, markdown) the way the frontend's NodeHelpService.fetchCustomNodeHelp finds it."""
    module = node["python_module"].split(".")
    assert module[0] == "custom_nodes" and len(module) >= 2, node["python_module"]
    base = f"/extensions/{module[1].split('@')[0]}/docs/"
    for url in (f"{base}{node['name']}/{locale}.md", f"{base}{node['name']}.md"):
        status, text = _http(server, url)
        if status == 200:
            return url, text
    return url, None


def test_every_pack_node_has_a_help_page_naming_its_inputs_and_outputs(ui, fastvmt_pack):
    page, server, errors = ui
    info = server.get_json("/object_info")
    pack = {name: d for name, d in info.items() if d["python_module"] == f"custom_nodes.{PACK_DIR_NAME}"}
    assert set(pack) == set(fastvmt_pack)
    for name, node in pack.items():
        url, md = _help_markdown(server, node)
        assert md is not None, f"{name}: no help page at {url}"
        inputs = [*node["input"].get("required", {}), *node["input"].get("optional", {})]
        missing = [i for i in inputs if i not in md] + [o for o in node["output_name"] if o not in md]
        assert not missing, f"{url} does not mention {missing}"
        assert md.startswith(f"# {node['display_name']}\n"), f"{url}: first line {md.splitlines()[0]!r}"

    # What the help panel shows: the frontend's own help store fetches and renders each page.
    shown = page.evaluate("""async (names) => {
        const pinia = document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia;
        const help = pinia._s.get('nodeHelp'), defs = pinia._s.get('nodeDef');
        const out = {};
        for (const name of names) {
            help.openHelp(defs.nodeDefsByName[name]);
            await new Promise(r => setTimeout(r, 0));
            for (let i = 0; i < 200 && help.isLoading; i++) await new Promise(r => setTimeout(r, 25));
            out[name] = { html: help.renderedHelpHtml, error: help.error, base: help.baseUrl };
        }
        help.closeHelp();
        return out;
    }""", sorted(pack))
    for name, got in shown.items():
        assert got["error"] is None, f"{name}: the help panel could not load its page: {got['error']}"
        assert got["base"] == f"/extensions/{PACK_DIR_NAME}/docs/"
        assert f"<h1>{pack[name]['display_name']}</h1>" in got["html"], got["html"][:300]
    assert not errors, errors


def _graph(tiny_wan: str) -> dict:
    """API graph: Extract Motion -> Save Motion and -> Guidance Sampler (4 steps, 1 guided,
    3 inner steps); Motion Fidelity on two random clips. Numeric ids "1".."14" (GraphBuilder's
    own, in the order below), as in the frontend."""
    g = builder()
    unet = g.node("UNETLoader", unet_name=tiny_wan, weight_dtype="default")
    ref = g.node("FastVMTTestLatent", seed=3, channels=16, frames=3, height=8, width=12)
    motion = g.node("FastVMTExtractMotion", model=unet.out(0), latent=ref.out(0), width=96, height=64, length=9,
                    motion_block=3, temporal_span=5, window=21, tile_rows=3, tile_cols=4, tau=1.0)
    g.node("FastVMTSaveMotion", motion=motion.out(0), filename_prefix="fastvmt/ui")
    pos = g.node("FastVMTTestConditioning", seed=1, tokens=8, text="a red fox")
    neg = g.node("FastVMTTestConditioning", seed=2, tokens=8, text="blurry")
    empty = g.node("FastVMTTestLatent", seed=4, channels=16, frames=3, height=8, width=12, scale=0.0)
    settings = g.node("FastVMTStepSkipSettings", **FastVMTSettings().step_skip_inputs(inner_steps=3))
    sample = g.node("FastVMTGuidanceSampler", model=unet.out(0), seed=7, steps=4, cfg=1.0, sampler_name="euler",
                    scheduler="simple", positive=pos.out(0), negative=neg.out(0), latent_image=empty.out(0),
                    denoise=1.0, motion=motion.out(0), settings=settings.out(0))
    g.node("FastVMTTestInspect", value=sample.out(0))
    reference = g.node("FastVMTTestImage", seed=5, frames=5, height=64, width=64)
    generated = g.node("FastVMTTestImage", seed=6, frames=5, height=64, width=64)
    fidelity = g.node("FastVMTMotionFidelity", reference=reference.out(0), generated=generated.out(0), max_tracks=50,
                      trail=2)
    g.node("FastVMTTestInspect", value=fidelity.out(0))
    return g.finalize()


_SNAPSHOT = """async () => {
    const { output, workflow } = await window.app.graphToPrompt();
    return { output, widgets_values: Object.fromEntries(workflow.nodes.map(n => [n.id, n.widgets_values ?? null])) };
}"""

_RUN = """async () => {
    const api = window.comfyAPI.api.api;
    const finished = new Promise((resolve) => {
        const stop = (result) => {
            api.removeEventListener('execution_success', ok);
            api.removeEventListener('execution_error', failed);
            clearTimeout(timer);
            resolve(result);
        };
        const ok = (e) => stop({ ok: true, prompt_id: e.detail.prompt_id });
        const failed = (e) => stop({ ok: false, error: e.detail });
        const timer = setTimeout(() => stop({ ok: false, error: 'no execution_success within 120 s' }), 120000);
        api.addEventListener('execution_success', ok);
        api.addEventListener('execution_error', failed);
    });
    await window.app.queuePrompt(0, 1);  // (its return value is false whenever node_errors is {})
    const nodeErrors = window.app.lastNodeErrors;
    if (nodeErrors && Object.keys(nodeErrors).length) return { ok: false, error: { node_errors: nodeErrors } };
    const result = await finished;
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return result;
}"""

_BOXES = """(name) => Object.fromEntries(window.app.graph.nodes.map(n => {
    const boxes = (n.widgets ?? []).filter(w => w.name === name);
    return [n.id, { type: n.type, values: boxes.map(w => w.value),
                    dom: boxes.map(w => { const el = w.inputEl ?? w.element;
                                          return el ? { value: el.value, readOnly: el.readOnly,
                                                        attached: el.isConnected } : null; }) }];
}))"""


def _same(got: dict, want: dict):
    """graphToPrompt() output and widgets_values equal, naming the nodes that differ."""
    for part in ("output", "widgets_values"):
        diff = {k: (got[part].get(k), want[part].get(k)) for k in set(got[part]) | set(want[part])
                if got[part].get(k) != want[part].get(k)}
        assert not diff, f"{part} changed: {json.dumps(diff, indent=1)[:3000]}"


def _run(page, server) -> dict:
    """Queue the page's graph from the page; {node id: text UI output} from /history."""
    result = page.evaluate(_RUN)
    assert result["ok"], f"run failed: {result.get('error')}\n{server.log_tail()}"
    history = server.get_json(f"/history/{result['prompt_id']}")[result["prompt_id"]]
    return {nid: "\n".join(out["text"]) for nid, out in history["outputs"].items() if "text" in out}


def test_run_summaries_show_under_the_nodes_and_are_not_serialised(ui, tiny_wan):
    page, server, errors = ui
    assert page.evaluate("() => window.app.extensions.some(e => e.name === 'FastVMT.RunSummary')")
    page.evaluate("(graph) => window.app.loadApiJson(graph, 'fastvmt_ui_test')", _graph(tiny_wan))
    # fixed seeds (the frontend randomizes every "seed" after queueing), so the second run takes
    # the first run's nodes from the cache and the graph can be compared before and after
    page.evaluate("""() => window.app.graph.nodes.forEach(n => (n.widgets ?? []).forEach(w => {
                                 if (w.name === 'control_after_generate') w.value = 'fixed'; }))""")
    before = page.evaluate(_SNAPSHOT)

    texts = _run(page, server)
    assert set(texts) == {"3", "4", "9", "13"}, texts
    boxes = page.evaluate(_BOXES, SUMMARY_WIDGET)
    for nid, node in boxes.items():
        want = [texts[str(nid)]] if str(nid) in texts else []
        assert node["values"] == want, f"node {nid} ({node['type']}): {node['values']} != {want}"
        assert all(d["value"] == texts[str(nid)] and d["readOnly"] and d["attached"] for d in node["dom"]), node
    assert texts["3"].startswith("FastVMT motion: 3 latent frames, 4x6 token grid")
    assert texts["4"] == "saved output/fastvmt/ui_00001_.safetensors"
    assert texts["9"].startswith("FastVMT effi_AMF: guided 1/1 of 4 steps, 3 inner steps")
    assert "loss [" in texts["9"] and "guidance " in texts["9"] and "s sampling" in texts["9"], texts["9"]
    assert texts["13"].startswith("Motion fidelity: "), texts["13"]

    # the boxes are in neither the API prompt nor the workflow's widgets_values
    _same(page.evaluate(_SNAPSHOT), before)

    # second run: Load Motion of the saved file; the rest comes from the cache and is shown again
    page.evaluate("""(file) => {
        const { app, LiteGraph } = window;
        const load = LiteGraph.createNode('FastVMTLoadMotion'), inspect = LiteGraph.createNode('FastVMTTestInspect');
        load.id = 20; inspect.id = 21;
        app.graph.add(load); app.graph.add(inspect);
        load.widgets.find(w => w.name === 'motion_file').value = file;
        load.connect(0, inspect, 0);
    }""", "fastvmt/ui_00001_.safetensors [output]")
    texts2 = _run(page, server)
    assert {k: v for k, v in texts2.items() if k != "20"} == texts
    assert texts2["20"].startswith("FastVMT motion: 3 latent frames, 4x6 token grid")
    boxes = page.evaluate(_BOXES, SUMMARY_WIDGET)
    for nid, node in boxes.items():
        want = [texts2[str(nid)]] if str(nid) in texts2 else []
        assert node["values"] == want, f"node {nid} ({node['type']}) after the second run: {node['values']}"
    assert {node["type"] for node in boxes.values() if node["values"]} == SUMMARY_NODES
    after = page.evaluate(_SNAPSHOT)
    assert {k: v for k, v in after["output"].items() if k not in ("20", "21")} == before["output"]
    assert after["output"]["20"]["inputs"] == {"motion_file": "fastvmt/ui_00001_.safetensors [output]"}
    assert {k: v for k, v in after["widgets_values"].items() if k not in ("20", "21")} == before["widgets_values"]
    assert not errors, errors
