#!/usr/bin/env python3
"""Template thumbnails and README screenshots of the example workflows, rendered in
ComfyUI's real frontend.

The template browser of ComfyUI's frontend (1.27) shows ``<name>.jpg`` next to a custom
node pack's ``<name>.json`` as the template's picture; its title and description are the
file name. This script opens every workflow in the frontend (ComfyUI's main.py with this
pack, headless Chromium through playwright) and writes ``example_workflows/<name>.jpg``:
the workflow's title and one-line description (``extra.fastvmt`` in the JSON, set in
build.py) over a picture of the whole graph. The JPEG's comment holds the digest of what
it shows (build.thumbnail_key), so tests/test_workflows.py finds a thumbnail that is older
than its workflow.

Usage, from the repository root::

    python example_workflows/render_thumbnails.py                  # every thumbnail
    python example_workflows/render_thumbnails.py NAME ...         # some of them
    python example_workflows/render_thumbnails.py --screenshots docs/screenshots NAME ...
                                                # the first view in a 1600 x 1000 window

Needs ComfyUI (``$COMFYUI_PATH`` or ``~/comfy/ComfyUI``, as the tests find it), playwright
(requirements-dev.txt) and Chromium from the OS (``$FASTVMT_CHROMIUM`` or ``chromium`` on
PATH; no browser is downloaded). tests/test_browser_workflows.py uses the helpers here.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
THUMBNAIL_SIZE = 512          # the card shows it in a 256 x 256 box (BaseThumbnail, w-64 h-64)
THUMBNAIL_MAX_BYTES = 100_000
SCREENSHOT_MAX_BYTES = 150_000
WINDOW = {"width": 1600, "height": 1000}
KEY_PREFIX = "fastvmt-thumbnail-key:"


def load_builder():
    spec = importlib.util.spec_from_file_location("fastvmt_example_workflows_build", HERE / "build.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def find_chromium():
    return os.environ.get("FASTVMT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


# ---------------------------------------------------------------------------
# the inputs the workflows name (reference.mp4, the self-test's clip, start_image.png)
# ---------------------------------------------------------------------------

def write_inputs(input_dir: Path, aspect: str = "landscape") -> None:
    """A short reference clip (``aspect``: "landscape" 832x480-like, "square" or
    "portrait" 9:16, the tallest preview the layout leaves room for) and a start image,
    under the names the workflows use (the clip under the self-test's name too)."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    b = load_builder()
    input_dir.mkdir(parents=True, exist_ok=True)
    w, h = {"landscape": (208, 120), "square": (160, 160), "portrait": (144, 256)}[aspect]
    with av.open(str(input_dir / b.REFERENCE_VIDEO), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(8))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(16):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[..., 0] = 40 + 60 * yy // h
            frame[..., 1] = 70 + 50 * yy // h
            frame[..., 2] = 120 + 80 * yy // h
            cx, cy, r = w * (0.2 + 0.6 * i / 15), h * 0.6, min(w, h) * 0.15
            frame[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (240, 140, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    shutil.copyfile(input_dir / b.REFERENCE_VIDEO, input_dir / b.SELFTEST_VIDEO)   # the self-test's clip name
    im = Image.new("RGB", (256, 256), (90, 140, 200))
    d = ImageDraw.Draw(im)
    d.rectangle([0, 170, 256, 256], fill=(70, 120, 60))
    d.ellipse([150, 30, 210, 90], fill=(250, 220, 120))
    d.ellipse([60, 120, 130, 190], fill=(200, 90, 40))
    im.save(input_dir / b.START_IMAGE)


# ---------------------------------------------------------------------------
# a ComfyUI server with the pack, and the frontend in Chromium
# ---------------------------------------------------------------------------

@contextmanager
def comfyui_server(base: Path):
    """ComfyUI's main.py (CPU) with ``base`` as its base directory and this pack in its
    custom_nodes; yields the address (host:port)."""
    if str(REPO) not in sys.path:  # run as a script, sys.path[0] is example_workflows/
        sys.path.insert(0, str(REPO))
    import comfy_host
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / comfy_host.PACK_DIR_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    try:
        server = comfy_host.start_server(base)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from exc
    try:
        yield server.address
    finally:
        comfy_host.stop_server(server)


def open_frontend(browser, address: str, *, missing_models_dialog: bool = True):
    """A page with the frontend loaded: the first-run template dialog off, the
    missing-models dialog as the user has it (on) unless told otherwise."""
    page = browser.new_page(viewport=WINDOW)
    page.goto(f"http://{address}/", wait_until="domcontentloaded")
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph && window.app.extensionManager",
                           timeout=120_000)
    page.evaluate("""async (models) => {
        const s = window.app.extensionManager.setting;
        await s.set('Comfy.TutorialCompleted', true);
        await s.set('Comfy.Workflow.ShowMissingModelsWarning', models);
    }""", missing_models_dialog)
    close_dialogs(page)
    return page


def close_dialogs(page):
    for _ in range(4):
        if not page.query_selector('[role="dialog"]'):
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(150)


LOAD_JS = """async (workflow) => {
    const app = window.app, g = () => app.graph;
    await app.loadGraphData(workflow);
    const known = Object.keys(window.LiteGraph.registered_node_types);
    const missing = workflow.nodes.map(n => n.type).filter(t => !known.includes(t));
    // wait for the media previews: Load Video grows to its clip's aspect ratio
    const t0 = performance.now();
    const frame = () => new Promise(r => requestAnimationFrame(() => r()));
    let last = '';
    for (let stable = 0; stable < 3 && performance.now() - t0 < 10000; ) {
        await frame();
        const videos = g()._nodes.filter(n => n.type === 'LoadVideo');
        const ready = videos.every(n => n.videoContainer && n.videoContainer.querySelector('video')
                                        && n.videoContainer.querySelector('video').readyState >= 2);
        const sizes = JSON.stringify(g()._nodes.map(n => [n.size[0], n.size[1]]));
        stable = ready && sizes === last ? stable + 1 : 0;
        last = sizes;
    }
    await new Promise(r => setTimeout(r, 150));
    const dialogs = [...document.querySelectorAll('[role="dialog"]')].map(d => d.innerText);
    const { output } = await app.graphToPrompt();
    const nodes = g()._nodes.map(n => ({
        id: n.id, type: n.type, title: n.title, pos: [...n.pos], size: [...n.size], rect: [...n.boundingRect],
        inputs: (n.inputs || []).map((s, i) => ({ name: s.name, link: s.link, pos: [...n.getInputPos(i)] })),
        outputs: (n.outputs || []).map((s, i) => ({ name: s.name, pos: [...n.getOutputPos(i)] })),
    }));
    const links = [];
    for (const l of (g().links instanceof Map ? g().links.values() : Object.values(g().links)))
        if (l) links.push([l.id, l.origin_id, l.origin_slot, l.target_id, l.target_slot]);
    const groups = g()._groups.map(gr => ({ title: gr.title, rect: [...gr._bounding] }));
    const c = app.canvas.canvas.getBoundingClientRect();
    return { output, missing, dialogs, nodes, links, groups,
             ds: { scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset] },
             canvas: [c.left, c.top, c.right, c.bottom] };
}"""


def load_workflow(page, ui: dict) -> dict:
    """Loads a UI workflow with app.loadGraphData (as the template browser does) and
    returns what the frontend made of it: its API prompt (graphToPrompt), node types it
    does not know, the dialogs shown, and the layout (nodes with their bounding boxes and
    socket positions after the previews loaded, links, groups, the view, the canvas)."""
    return page.evaluate(LOAD_JS, ui)


SUMMARIES_JS = """async (types) => {
    // What a run leaves on the canvas: the pack's web extension (web/js/fastvmt.js,
    // "FastVMT.RunSummary") puts each node's text output in a box under it. Here every
    // such node gets the longest box the extension draws (16 rows).
    const app = window.app;
    const present = (app.extensions || []).some(e => e.name === 'FastVMT.RunSummary');
    const text = Array.from({ length: 16 }, (_, i) => 'summary line ' + (i + 1)).join('\\n');
    const shown = [];
    if (present)
        for (const n of app.graph._nodes)
            if (types.includes(n.type) && n.onExecuted) { n.onExecuted({ text: [text] }); shown.push(n.id); }
    for (let i = 0; i < 3; i++) await new Promise(r => requestAnimationFrame(() => r()));
    return { present, shown, nodes: app.graph._nodes.map(n => ({ id: n.id, size: [...n.size],
                                                             rect: [...n.boundingRect] })) };
}"""


def show_run_summaries(page, types) -> dict:
    """Shows the run-summary box of the web extension on every node of ``types`` in the
    loaded workflow; returns whether the extension is there, which nodes got a box and
    every node's size and bounding box after it."""
    return page.evaluate(SUMMARIES_JS, sorted(types))


def uncovered(page, box) -> list:
    """Points of ``box`` (window coordinates) where something else than the graph canvas
    (or a widget inside a node) is on top: the side bar, menus, minimap, dialogs."""
    return page.evaluate("""([x0, y0, x1, y1]) => {
        const c = window.app.canvas.canvas, bad = [];
        for (let x = x0; x <= x1; x += 12) for (let y = y0; y <= y1; y += 12) {
            const e = document.elementFromPoint(x, y);
            if (e !== c && !(e && e.closest('.dom-widget')))
                bad.push([Math.round(x), Math.round(y), e ? e.tagName + '.' + String(e.className).slice(0, 40) : null]);
        }
        return bad;
    }""", list(box))


def to_window(ds: dict, canvas, rect) -> tuple:
    """Graph rectangle [x, y, w, h] -> window box (x0, y0, x1, y1) under view ``ds``."""
    s, (ox, oy) = ds["scale"], ds["offset"]
    x, y, w, h = rect
    return (canvas[0] + (x + ox) * s, canvas[1] + (y + oy) * s, canvas[0] + (x + w + ox) * s,
            canvas[1] + (y + h + oy) * s)


# ---------------------------------------------------------------------------
# thumbnails and screenshots
# ---------------------------------------------------------------------------

THUMB_BOX = (80, 90, 980, 990)   # a square of the window clear of the side bar, menu and minimap

OVERLAY_JS = """([box, title, description]) => {
    const d = document.createElement('div');
    d.id = 'fastvmt-thumbnail-band';
    Object.assign(d.style, { position: 'fixed', left: box[0] + 'px', top: box[1] + 'px',
        width: (box[2] - box[0]) + 'px', zIndex: 100000, boxSizing: 'border-box',
        padding: '34px 44px 30px', background: 'linear-gradient(135deg, #1d3557, #2a6f97)', color: '#fff',
        fontFamily: 'Inter, Arial, sans-serif', display: 'flex', flexDirection: 'column', gap: '14px' });
    d.innerHTML = '<div style="font-size:28px;letter-spacing:3px;opacity:.75">FASTVMT \u00b7 WAN</div>'
        + '<div style="font-size:56px;font-weight:700;line-height:1.1;white-space:nowrap"></div>'
        + '<div style="font-size:30px;line-height:1.25;opacity:.9"></div>';
    const [, t, desc] = d.children;
    t.textContent = title;
    desc.textContent = description;
    document.body.appendChild(d);
    for (let size = 56; size > 30 && t.scrollWidth > t.clientWidth; size -= 2) t.style.fontSize = size + 'px';
    return d.getBoundingClientRect().height;   // the graph goes below the band
}"""


def fit_view(page, bounds, box) -> None:
    """Sets the view so that graph ``bounds`` (x0, y0, x1, y1) fill window ``box``."""
    page.evaluate("""([b, box]) => {
        const c = window.app.canvas, r = c.canvas.getBoundingClientRect(), m = 24;
        const s = Math.min((box[2] - box[0] - 2 * m) / (b[2] - b[0]), (box[3] - box[1] - 2 * m) / (b[3] - b[1]));
        c.ds.scale = s;
        c.ds.offset[0] = ((box[0] + box[2]) / 2 - r.left) / s - (b[0] + b[2]) / 2;
        c.ds.offset[1] = ((box[1] + box[3]) / 2 - r.top) / s - (b[1] + b[3]) / 2;
        c.setDirty(true, true);
    }""", [list(bounds), list(box)])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())))")
    page.wait_for_timeout(100)


def jpeg(png: bytes, size=None, max_bytes=THUMBNAIL_MAX_BYTES, comment: str = "") -> bytes:
    """PNG screenshot -> JPEG (resized to ``size``), the best quality under ``max_bytes``."""
    from PIL import Image
    im = Image.open(io.BytesIO(png)).convert("RGB")
    if size:
        im = im.resize(size, Image.LANCZOS)
    for q in (88, 82, 76, 70, 62, 55, 45):
        out = io.BytesIO()
        im.save(out, "JPEG", quality=q, optimize=True, progressive=True, comment=comment.encode())
        if out.tell() <= max_bytes:
            return out.getvalue()
    raise ValueError(f"no JPEG quality keeps the picture under {max_bytes} bytes")


def thumbnail(page, ui: dict, graph_bounds) -> bytes:
    """The template picture of a loaded workflow: title band over the whole graph."""
    b = load_builder()
    meta = ui["extra"]["fastvmt"]
    close_dialogs(page)
    box = THUMB_BOX
    band = page.evaluate(OVERLAY_JS, [list(box), meta["title"], meta["description"]])
    fit_view(page, graph_bounds, (box[0], box[1] + band, box[2], box[3]))
    try:
        png = page.screenshot(clip={"x": box[0], "y": box[1], "width": box[2] - box[0], "height": box[3] - box[1]})
    finally:
        page.evaluate("() => document.getElementById('fastvmt-thumbnail-band').remove()")
    return jpeg(png, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), THUMBNAIL_MAX_BYTES, KEY_PREFIX + b.thumbnail_key(ui))


def thumbnail_key_of(path: Path):
    """The key render_thumbnails wrote into a thumbnail's JPEG comment (None if none)."""
    from PIL import Image
    with Image.open(path) as im:
        comment = im.info.get("comment", b"")
    text = comment.decode(errors="replace") if isinstance(comment, bytes) else str(comment)
    return text[len(KEY_PREFIX):] if text.startswith(KEY_PREFIX) else None


def screenshot(page, max_bytes=SCREENSHOT_MAX_BYTES) -> bytes:
    """The browser window as the user sees it (dialogs closed), as a JPEG."""
    close_dialogs(page)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r())))")
    return jpeg(page.screenshot(), None, max_bytes)


def _graph_bounds(layout: dict) -> tuple:
    rects = [n["rect"] for n in layout["nodes"]] + [g["rect"] for g in layout["groups"]]
    return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[0] + r[2] for r in rects),
            max(r[1] + r[3] for r in rects))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="workflow names (default: all)")
    ap.add_argument("--screenshots", type=Path, metavar="DIR",
                    help="write <name>.jpg screenshots of the first view (1600 x 1000 window) there instead")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set FASTVMT_CHROMIUM)")
    paths = sorted(HERE.glob("*.json"))
    if args.names:
        paths = [HERE / f"{n.removesuffix('.json')}.json" for n in args.names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"no such workflow: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="fastvmt_render_") as tmp:
        base = Path(tmp)
        write_inputs(base / "input", "landscape")
        with comfyui_server(base) as address, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = open_frontend(browser, address, missing_models_dialog=False)
            page.evaluate("""async () => {
                await window.app.extensionManager.setting.set('Comfy.Graph.CanvasInfo', false);
            }""")
            for path in paths:
                ui = json.loads(path.read_text(encoding="utf-8"))
                layout = load_workflow(page, ui)
                if args.screenshots:
                    args.screenshots.mkdir(parents=True, exist_ok=True)
                    out = args.screenshots / f"{path.stem}.jpg"
                    out.write_bytes(screenshot(page))
                else:
                    out = path.with_suffix(".jpg")
                    out.write_bytes(thumbnail(page, ui, _graph_bounds(layout)))
                print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} "
                      f"({out.stat().st_size // 1000} KB)")
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
