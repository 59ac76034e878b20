"""Every UI workflow in the real frontend of a real ComfyUI server, in headless Chromium.

Chromium comes from the OS packages (``apt-get install chromium``) and is driven by the
``playwright`` package with ``executable_path``; no browser is downloaded. The server is
ComfyUI's main.py with the pack in its custom_nodes folder and, in its input folder, the
files the workflows name: a 9:16 portrait reference clip (the tallest preview the layouts
leave room for) and a start image. Each workflow is loaded once with ``app.loadGraphData``
(as the template browser loads it), the media previews are waited for, and the tests check:

* the frontend knows every node type and shows no missing-node dialog; its missing-models
  dialog lists every model file the workflow names (what the Models notes promise);
* the frontend's own ``graphToPrompt()`` gives the shipped API file;
* the layout as the frontend draws it: no node's bounding box (title bar included, Load
  Video grown to its portrait preview) overlaps another's, also after a run, when the
  pack's web extension has put its summary box under a node; the sockets sit where
  build.py computes them; links run behind no more nodes than build.py allows;
* the saved view shows the whole graph in a 1600 x 1000 window, with nothing of the UI
  (side bar, menu, minimap, dialogs) on top of it;
* the template browser lists every workflow of the pack, and each card's picture is the
  workflow's thumbnail, served as a JPEG at the URL the frontend asks for.

A screenshot of every workflow's first view goes to ``$FASTVMT_SCREENSHOTS`` (default: a
temporary folder); docs/screenshots/ come from ``example_workflows/render_thumbnails.py
--screenshots docs/screenshots NAME ...``.
"""

import json
import os
import urllib.request
from pathlib import Path

import pytest

import comfy_host
from comfy_host import PACK_DIR_NAME
from tests.helpers.workflows import WORKFLOW_DIR, api_file_for, load_builder, load_example_module, ui_files


render = load_example_module("render_thumbnails.py")
build = load_builder()
CHROMIUM = render.find_chromium()
GRAPHS = {g.name: g for g in build.graphs()}


@pytest.fixture(scope="module")
def frontend(comfy, fastvmt_pack, tmp_path_factory):
    """(page, server, screenshot folder): a Chromium page on a real ComfyUI server with
    the pack loaded, and a cache of what each workflow looked like there."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    chromium = CHROMIUM
    if chromium is None:
        pytest.skip("no Chromium: apt-get install chromium (or set FASTVMT_CHROMIUM)")
    base = tmp_path_factory.mktemp("comfy_browser")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(comfy_host.REPO_ROOT, target_is_directory=True)
    render.write_inputs(base / "input", "portrait")
    shots = Path(os.environ.get("FASTVMT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    server = comfy_host.start_server(base)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = render.open_frontend(browser, server.address)
            yield {"page": page, "server": server, "shots": shots, "loaded": {}}
            browser.close()
    finally:
        comfy_host.stop_server(server)


def loaded(frontend, ui_path: Path) -> dict:
    """The workflow as the frontend loaded it (once per module): its layout, the API
    prompt, dialogs, what covers its first view; writes its screenshot."""
    if ui_path.stem not in frontend["loaded"]:
        page = frontend["page"]
        ui = json.loads(ui_path.read_text(encoding="utf-8"))
        got = render.load_workflow(page, ui)
        render.close_dialogs(page)
        rects = [n["rect"] for n in got["nodes"]] + [g["rect"] for g in got["groups"]]
        boxes = [render.to_window(got["ds"], got["canvas"], r) for r in rects]
        got["view"] = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                       max(b[3] for b in boxes))
        got["covered"] = render.uncovered(page, got["view"])
        (frontend["shots"] / f"{ui_path.stem}.jpg").write_bytes(render.screenshot(page, max_bytes=10**7))
        got["after_run"] = render.show_run_summaries(page, build.SUMMARY_NODES)
        frontend["loaded"][ui_path.stem] = got
    return frontend["loaded"][ui_path.stem]


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_frontend_loads_the_workflow_and_converts_it_to_the_shipped_api_file(frontend, ui_path):
    got = loaded(frontend, ui_path)
    assert not got["missing"], f"node types unknown to the frontend: {got['missing']}\n" \
                               f"{frontend['server'].log_tail()}"
    dialogs = "\n".join(got["dialogs"]).lower()
    assert "missing node" not in dialogs and "node types were not found" not in dialogs, got["dialogs"]
    # no model file is on this server: the missing-models dialog lists each one (with its folder)
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    models = {(m["directory"], m["name"]) for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])}
    assert models
    missing_models = next((d for d in got["dialogs"] if "Missing Models" in d), "")
    for folder, name in sorted(models):
        assert f"{folder} / {name}" in missing_models, (folder, name, got["dialogs"])
    api = json.loads(api_file_for(ui_path).read_text(encoding="utf-8"))
    # With a clip loaded, Load Video's preview (a DOM widget, "video-preview") sends an empty
    # value along; ComfyUI ignores inputs a node does not declare.
    for node in got["output"].values():
        if node["class_type"] == "LoadVideo" and node["inputs"].get("video-preview") == "":
            del node["inputs"]["video-preview"]
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    assert strip(got["output"]) == strip(api)
    titles = {k: v.get("_meta", {}).get("title") for k, v in got["output"].items()}
    assert titles == {k: v.get("_meta", {}).get("title") for k, v in api.items()}


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_layout_as_the_frontend_draws_it(frontend, ui_path):
    """Nothing overlaps with Load Video grown to a portrait clip; the sockets are where
    build.py puts them; links run behind at most the nodes build.py allows."""
    got = loaded(frontend, ui_path)
    g = GRAPHS[ui_path.stem]
    nodes = {n["id"]: n for n in got["nodes"]}
    videos = [n for n in got["nodes"] if n["type"] == "LoadVideo"]
    for v in videos:  # the preview loaded: the node grew to the 9:16 clip
        assert v["size"][1] > build.VIDEO_W * build.PORTRAIT, v
    rects = {n["id"]: n["rect"] for n in got["nodes"]}
    names = {n["id"]: n["title"] for n in got["nodes"]}
    clashes = [(names[a], names[b]) for a, b in build.overlaps(rects)]
    assert not clashes, f"overlapping nodes: {clashes}"
    groups = [(a, b) for a, b in build.overlaps({gr["title"]: gr["rect"] for gr in got["groups"]})]
    assert not groups, f"overlapping groups: {groups}"
    # after a run: the web extension's summary boxes grow their nodes, into room left for them
    after = got["after_run"]
    if after["present"]:
        grown = {n["id"]: n for n in after["nodes"]}
        summary_nodes = [n["id"] for n in got["nodes"] if n["type"] in build.SUMMARY_NODES]
        assert sorted(after["shown"]) == sorted(summary_nodes)
        assert all(grown[i]["size"][1] > nodes[i]["size"][1] for i in summary_nodes)
        clashes = [(names[a], names[b]) for a, b in build.overlaps({i: n["rect"] for i, n in grown.items()})]
        assert not clashes, f"overlapping nodes after a run (summary boxes shown): {clashes}"
    # sockets: the frontend's positions are the ones build.py's layout checks use
    by_id = {n.id: n for n in g.nodes}
    geometry = []
    for _, o, oslot, t, tslot in got["links"]:
        a, b = nodes[o]["outputs"][oslot]["pos"], nodes[t]["inputs"][tslot]["pos"]
        ins, _ = build.slot_positions(by_id[t])
        outs = build.slot_positions(by_id[o])[1]
        name = nodes[t]["inputs"][tslot]["name"]
        assert max(abs(a[0] - outs[oslot][0]), abs(a[1] - outs[oslot][1])) <= 1, (names[o], oslot, a, outs[oslot])
        assert max(abs(b[0] - ins[name][0]), abs(b[1] - ins[name][1])) <= 1, (names[t], name, b, ins[name])
        geometry.append((o, t, a, b))
    assert len(geometry) == len(got["links"]) > 0
    hits = build.link_crossings(rects, geometry)
    assert len(hits) <= g.max_crossings, [f"{names[o]} -> {names[t]} behind {names[n]}" for o, t, n in hits]


@pytest.mark.parametrize("ui_path", ui_files(), ids=lambda p: p.stem)
def test_first_view_shows_the_whole_graph(frontend, ui_path):
    """The saved view (extra.ds) as the frontend applies it: every node and group inside
    the canvas of a 1600 x 1000 window, and no part of the UI on top of the graph."""
    got = loaded(frontend, ui_path)
    ui = json.loads(ui_path.read_text(encoding="utf-8"))
    assert got["ds"]["scale"] == pytest.approx(ui["extra"]["ds"]["scale"])
    assert got["ds"]["offset"] == pytest.approx(ui["extra"]["ds"]["offset"])
    x0, y0, x1, y1 = got["view"]
    c = got["canvas"]
    assert c[0] <= x0 and c[1] <= y0 and x1 <= c[2] and y1 <= c[3], (got["view"], c)
    assert not got["covered"], f"UI on top of the graph at {got['covered'][:5]}"


def test_template_browser_shows_every_workflow_with_its_thumbnail(frontend):
    """/api/workflow_templates lists every workflow under the pack's folder name; the
    template browser (Workflow > Browse Templates) shows a card for each whose picture is
    its thumbnail: the frontend requests /api/workflow_templates/<pack>/<name>.jpg, the
    server answers 200 with a JPEG, and the card shows it."""
    page, server = frontend["page"], frontend["server"]
    names = sorted(p.stem for p in ui_files())
    assert sorted(server.get_json("/api/workflow_templates").get(PACK_DIR_NAME, [])) == names
    responses = {}

    def on_response(r):
        if "/workflow_templates/" in r.url and r.url.endswith(".jpg"):
            responses[r.url] = (r.status, r.headers.get("content-type"))

    page.on("response", on_response)
    page.evaluate("() => window.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    try:
        page.get_by_text(PACK_DIR_NAME, exact=True).first.click(timeout=30_000)
        cards = {}
        for name in names:
            card = page.locator(f'[data-testid="template-workflow-{name}"]')
            card.scroll_into_view_if_needed(timeout=30_000)
            page.wait_for_function("""(n) => {
                const img = document.querySelector(`[data-testid="template-workflow-${n}"] img`);
                return img && img.complete && img.naturalWidth > 0; }""", arg=name, timeout=30_000)
            cards[name] = page.evaluate("""(n) => {
                const card = document.querySelector(`[data-testid="template-workflow-${n}"]`);
                return { width: card.querySelector('img').naturalWidth, text: card.innerText }; }""", name)
    finally:
        page.remove_listener("response", on_response)
        render.close_dialogs(page)
    for name in names:
        url = f"http://{server.address}/api/workflow_templates/{PACK_DIR_NAME}/{name}.jpg"
        assert responses.get(url) == (200, "image/jpeg"), (url, responses)
        assert cards[name]["width"] == render.THUMBNAIL_SIZE, cards[name]  # the card shows the thumbnail
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.read() == (WORKFLOW_DIR / f"{name}.jpg").read_bytes()
