"""The graph model: nodes with widget values and links, groups, and the geometry of
LiteGraph as ComfyUI's frontend 1.27 draws it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

from .schema import SPECS, Spec

# --- geometry of LiteGraph as ComfyUI's frontend 1.27 draws it (measured there; the
# browser test compares every slot position with the frontend's getInputPos/getOutputPos)
TITLE = 30          # title bar height, drawn above pos
SLOT = 20           # socket row height
WIDGET_ROW = 24     # widget row height
SLOT_Y0 = 14        # first socket's centre below pos
SLOT_X_IN = 10      # input socket centre right of pos[0]
SLOT_X_OUT = -9     # output socket centre left of the right edge
GAP = 40            # vertical gap between stacked nodes (between one's bottom and the next one's title)

# Load Video's preview: the frontend sizes it to the node's width at the clip's aspect
# ratio (fitDimensionsToNodeWidth) and grows the node to fit; 74 px are its other rows.
VIDEO_W = 320
VIDEO_ROWS = 74
PORTRAIT = 16 / 9   # the tallest clip the layout leaves room for (9:16 portrait)
VIDEO_RESERVE = math.ceil(VIDEO_ROWS + VIDEO_W * PORTRAIT)

# The pack's web extension (web/js/fastvmt.js) shows a run summary in a box under these
# nodes after a run, growing them by up to 16 text rows (14 px each, plus margins).
SUMMARY_NODES = {"FastVMTExtractMotion", "FastVMTGuidanceSampler", "FastVMTLoadMotion", "FastVMTSaveMotion",
                 "FastVMTMotionFidelity"}
SUMMARY_ROOM = 16 * 14 + 12 + 20

NOTE_COLOR = ("#432", "#653")


@dataclass(frozen=True)
class Out:
    node: "Node"
    slot: int


@dataclass(eq=False)
class Node:
    id: int
    type: str
    pos: tuple
    size: tuple
    title: Optional[str] = None
    values: dict = field(default_factory=dict)   # widget name -> value
    links: dict = field(default_factory=dict)    # input name -> Out
    color: Optional[tuple] = None
    reserve: Optional[int] = None                # height the node may grow to in the frontend

    def out(self, which: Union[int, str] = 0) -> Out:
        if isinstance(which, str):
            names = [n for n, _ in SPECS[self.type].outputs]
            which = names.index(which)
        return Out(self, which)

    @property
    def height(self) -> float:
        """Height the layout keeps for the node (its size, or the room it may grow to)."""
        return max(self.size[1], self.reserve or 0)

    @property
    def label(self) -> str:
        return self.title or SPECS.get(self.type, Spec(self.type, self.type, (), ())).display

    def rect(self) -> list:
        """[x, y, w, h] including the title bar and the reserved growth."""
        return [self.pos[0], self.pos[1] - TITLE, self.size[0], self.height + TITLE]


@dataclass
class Group:
    title: str
    nodes: list
    color: str

    def bounding(self) -> list:
        """[x, y, w, h]: the nodes with a margin, and room for the group's title."""
        x0 = min(n.pos[0] for n in self.nodes) - 20
        y0 = min(n.pos[1] for n in self.nodes) - TITLE - 30
        x1 = max(n.pos[0] + n.size[0] for n in self.nodes) + 20
        y1 = max(n.pos[1] + n.height for n in self.nodes) + 20
        return [x0, y0, x1 - x0, y1 - y0]


def default_size(spec: Spec):
    """A node's size: at least what the frontend computes for it (computeSize)."""
    rows = max(len(spec.sockets), len(spec.outputs))
    return (320, SLOT * rows + WIDGET_ROW * len(spec.widget_rows()) + 24)


def _split_inputs(spec: Spec, kw: dict) -> tuple[dict, dict]:
    """(widget values, links) of ``kw``, checked against the schema: links go to sockets
    or widgets, plain values only to widgets; every required socket is linked and every
    widget without a default has a value."""
    values, links = {}, {}
    for k, v in kw.items():
        inp = spec.input(k)
        if isinstance(v, Node):
            v = v.out(0)
        if isinstance(v, Out):
            links[k] = v
        elif not inp.widget:
            raise KeyError(f"{spec.type}: socket {k!r} takes a link, not {v!r}")
        else:
            values[k] = v
    for inp in spec.inputs:
        if inp.widget and inp.name not in values and inp.name not in links and not inp.has_default:
            raise KeyError(f"{spec.type}: widget {inp.name!r} has no default: give it a value")
        if not inp.widget and not inp.optional and inp.name not in links:
            raise KeyError(f"{spec.type}: input {inp.name!r} must be connected")
    return values, links


class Graph:
    def __init__(self, name: str, title: str, description: str, max_crossings: int = 0):
        self.name = name
        self.title = title              # drawn on the template thumbnail
        self.description = description  # one line, drawn on the template thumbnail
        self.max_crossings = max_crossings  # link-behind-node budget (check_layout)
        self.nodes: list[Node] = []
        self.groups: list[Group] = []

    def add(self, type_: str, *, title=None, size=None, color=None, reserve=None, **kw) -> Node:
        """A node of ``type_``: keyword arguments are its widget values and its links (a
        Node for its first output, or ``node.out(...)``). It stands at (0, 0) until the
        workflow's column plan places it (layout.place)."""
        spec = SPECS.get(type_)
        if spec is None:
            raise KeyError(f"no schema for {type_}: add it to NODE_TYPES and run build.py --update-schemas")
        values, links = _split_inputs(spec, kw)
        if reserve is None and type_ in SUMMARY_NODES:
            reserve = default_size(spec)[1] + SUMMARY_ROOM
        node = Node(len(self.nodes) + 1, type_, (0, 0), tuple(size or default_size(spec)), title, values, links,
                    color, reserve)
        self.nodes.append(node)
        return node

    def note(self, text: str, size=(380, 160), title="Note") -> Node:
        node = Node(len(self.nodes) + 1, "Note", (0, 0), tuple(size), title, {"text": text}, {}, NOTE_COLOR)
        self.nodes.append(node)
        return node

    def group(self, title: str, nodes, color="#3f789e"):
        self.groups.append(Group(title, list(nodes), color))
