"""Where the frontend draws sockets and links, the layout checks, and the first view.

Layout rules checked for every workflow (``check_layout``), and again in the real
frontend by tests/test_browser_workflows.py: no node (title bar included, and the room a
node may grow into, see ``Node.reserve``) overlaps another, groups do not overlap, links
run behind at most ``Graph.max_crossings`` nodes that are not their ends, and the saved
view (``extra.ds``) shows the whole graph in a 1600 x 1000 browser window.
"""
from __future__ import annotations

import math

from .graph import SLOT, SLOT_X_IN, SLOT_X_OUT, SLOT_Y0, WIDGET_ROW, Graph, Node
from .schema import SPECS, VIRTUAL_TYPES

# --- the first view: a 1600 x 1000 window, ComfyUI 0.3.64 / frontend 1.27.10 defaults.
# The canvas starts below the top bar (78 px) and right of the side bar (64 px); the
# minimap (bottom right) and the canvas info text (bottom left) stay clear of the graph.
WINDOW = (1600, 1000)
CANVAS_ORIGIN = (64, 78)
VIEW_MARGIN = 16
VIEW_REGIONS = (               # window rectangles (x0, y0, x1, y1) the graph may fill
    (CANVAS_ORIGIN[0] + VIEW_MARGIN, CANVAS_ORIGIN[1] + VIEW_MARGIN, WINDOW[0] - VIEW_MARGIN, 734 - VIEW_MARGIN),
    (CANVAS_ORIGIN[0] + VIEW_MARGIN, CANVAS_ORIGIN[1] + VIEW_MARGIN, 1306 - VIEW_MARGIN, 915 - VIEW_MARGIN),
)
MAX_VIEW_SCALE = 1.0


def slot_positions(n: Node) -> tuple[dict, list]:
    """Where the frontend draws the node's sockets: ({input name: (x, y)}, [output (x, y)])."""
    spec = SPECS[n.type]
    x, y = n.pos
    ins = {s.name: (x + SLOT_X_IN, y + SLOT_Y0 + SLOT * i) for i, s in enumerate(spec.sockets)}
    rows_top = y + SLOT_Y0 + SLOT * max(len(spec.sockets), len(spec.outputs)) + 2
    for k, (name, kind) in enumerate(spec.widget_rows()):
        if kind == "value":
            ins[name] = (x + SLOT_X_IN, rows_top + WIDGET_ROW * k)
    outs = [(x + n.size[0] + SLOT_X_OUT, y + SLOT_Y0 + SLOT * i) for i in range(len(spec.outputs))]
    return ins, outs


def link_geometry(g: Graph) -> list:
    """[(origin node id, target node id, start (x, y), end (x, y))] for every link."""
    out = []
    for n in g.nodes:
        ins, _ = slot_positions(n) if n.type not in VIRTUAL_TYPES else ({}, [])
        for name, ref in n.links.items():
            out.append((ref.node.id, n.id, slot_positions(ref.node)[1][ref.slot], ins[name]))
    return out


def link_curve(a, b, steps=100):
    """Points of the frontend's spline link from output ``a`` to input ``b`` (a cubic Bezier
    with horizontal control arms of a quarter of the distance: LinkConnectorRenderer)."""
    d = math.dist(a, b) * 0.25
    p = (a, (a[0] + d, a[1]), (b[0] - d, b[1]), b)
    pts = []
    for i in range(1, steps):
        t = i / steps
        u = 1 - t
        pts.append(tuple(u ** 3 * p[0][k] + 3 * u * u * t * p[1][k] + 3 * u * t * t * p[2][k] + t ** 3 * p[3][k]
                         for k in (0, 1)))
    return pts


def link_crossings(rects: dict, links) -> list:
    """[(origin id, target id, node id)]: a link drawn behind a node that is not one of its
    ends. ``rects``: node id -> [x, y, w, h] (title bar included); ``links``: as
    link_geometry."""
    hits = []
    for o, t, a, b in links:
        pts = link_curve(a, b)
        for nid, (x, y, w, h) in rects.items():
            if nid in (o, t):
                continue
            if any(x < px < x + w and y < py < y + h for px, py in pts):
                hits.append((o, t, nid))
    return hits


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def overlaps(rects: dict) -> list:
    """[(id, id)] of overlapping rectangles (``rects``: id -> [x, y, w, h])."""
    items = sorted(rects.items(), key=lambda kv: str(kv[0]))
    return [(ia, ib) for i, (ia, a) in enumerate(items) for ib, b in items[i + 1:] if _overlap(a, b)]


def check_layout(g: Graph, ui: dict):
    """Nodes (title bar and reserved growth included) do not overlap, groups do not
    overlap, links run behind at most ``g.max_crossings`` nodes that are not their ends,
    and the first view shows the whole graph."""
    titles = {n.id: n.label for n in g.nodes}
    bad = [f"nodes {titles[a]!r} and {titles[b]!r} overlap" for a, b in overlaps({n.id: n.rect() for n in g.nodes})]
    bad += [f"groups {a!r} and {b!r} overlap" for a, b in overlaps({gr["title"]: gr["bounding"] for gr in ui["groups"]})]
    hits = link_crossings({n.id: n.rect() for n in g.nodes}, link_geometry(g))
    if len(hits) > g.max_crossings:
        bad += [f"{len(hits)} links behind nodes (at most {g.max_crossings}): "
                + "; ".join(f"{titles[o]} -> {titles[t]} behind {titles[n]}" for o, t, n in hits)]
    x0, y0, x1, y1 = view_box(ui["extra"]["ds"], graph_bounds(g))
    if not any(rx0 <= x0 and ry0 <= y0 and x1 <= rx1 and y1 <= ry1 for rx0, ry0, rx1, ry1 in VIEW_REGIONS):
        bad.append(f"the first view does not show the whole graph: {[round(v) for v in (x0, y0, x1, y1)]}")
    if bad:
        raise ValueError("; ".join(bad))


def graph_bounds(g: Graph) -> tuple:
    """(x0, y0, x1, y1) of every node (title and reserve included) and group."""
    rects = [n.rect() for n in g.nodes] + [grp.bounding() for grp in g.groups]
    return (min(r[0] for r in rects), min(r[1] for r in rects), max(r[0] + r[2] for r in rects),
            max(r[1] + r[3] for r in rects))


def view_box(ds: dict, bounds) -> tuple:
    """Where ``bounds`` (graph coordinates) land in the browser window under view ``ds``."""
    s, (ox, oy) = ds["scale"], ds["offset"]
    x0, y0, x1, y1 = bounds
    return (CANVAS_ORIGIN[0] + (x0 + ox) * s, CANVAS_ORIGIN[1] + (y0 + oy) * s,
            CANVAS_ORIGIN[0] + (x1 + ox) * s, CANVAS_ORIGIN[1] + (y1 + oy) * s)


def first_view(g: Graph) -> dict:
    """extra.ds (scale, offset) that shows the whole graph, as large as it fits, centred in
    the best of VIEW_REGIONS of a 1600 x 1000 window."""
    x0, y0, x1, y1 = graph_bounds(g)
    w, h = x1 - x0, y1 - y0
    best = None
    for rx0, ry0, rx1, ry1 in VIEW_REGIONS:
        s = math.floor(min((rx1 - rx0) / w, (ry1 - ry0) / h, MAX_VIEW_SCALE) * 1000) / 1000
        if best is None or s > best[0]:
            best = (s, rx0, ry0, rx1, ry1)
    s, rx0, ry0, rx1, ry1 = best
    cx = (rx0 + rx1) / 2 - CANVAS_ORIGIN[0]
    cy = (ry0 + ry1) / 2 - CANVAS_ORIGIN[1]
    return {"scale": s, "offset": [round(cx / s - (x0 + x1) / 2, 1), round(cy / s - (y0 + y1) / 2, 1)]}
