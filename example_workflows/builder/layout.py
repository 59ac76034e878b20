"""Node positions from a workflow's column plan.

A workflow declares a ``Grid`` (its columns, left to right: each one's width and the gap
after it) and a plan: for each column, its nodes top-down. A column's x is the sum of
the widths and gaps before it. A node's y follows the node above it in its column
(``Below``, ``GAP`` under its bottom, reserved growth included) unless the plan anchors
it: ``At`` a fixed y, on the ``Row`` of another node (so that a link between them runs
straight), ``Below`` a given node, or ``Mid`` between two nodes. Anchors may point into
other columns; ``place`` resolves them in dependency order.

Layout rules the plans follow: nodes stand in columns, and a link joins neighbouring
columns wherever it can (it then runs through the empty space between them, not behind
other nodes); a link that has to pass a column runs along a row that column leaves free.
Loaders and other nodes without inputs stand next to the nodes they feed; notes stand
where no link runs. Room is left under Load Video for a portrait clip's preview and under
the nodes with a run summary for its box (Node.reserve).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .graph import GAP, TITLE, Graph, Node

DEFAULT_COLUMN_GAP = 120


@dataclass(frozen=True)
class Grid:
    """Columns left to right: (name, width, gap to the next column)."""
    columns: tuple

    @classmethod
    def of(cls, **columns) -> "Grid":
        """``Grid.of(A=320, B=(420, 160))``: a width, or (width, gap after it)."""
        return cls(tuple((name, *(c if isinstance(c, tuple) else (c, DEFAULT_COLUMN_GAP)))
                         for name, c in columns.items()))

    def x(self, name: str) -> int:
        x = 0
        for col, width, gap in self.columns:
            if col == name:
                return x
            x += width + gap
        raise KeyError(f"no column {name!r} in the grid {[c[0] for c in self.columns]}")

    def width(self, name: str) -> int:
        return next(width for col, width, _ in self.columns if col == name)


@dataclass(frozen=True)
class At:
    """A fixed y."""
    y: int

    def refs(self):
        return ()

    def top(self):
        return self.y


@dataclass(frozen=True)
class Row:
    """The top of ``ref`` (plus ``dy``): the row of a node this one is linked with."""
    ref: Node
    dy: int = 0

    def refs(self):
        return (self.ref,)

    def top(self):
        return self.ref.pos[1] + self.dy


@dataclass(frozen=True)
class Below:
    """The title bar ``gap`` under ``ref``'s bottom (its reserved growth included)."""
    ref: Node
    gap: int = GAP

    def refs(self):
        return (self.ref,)

    def top(self):
        return self.ref.pos[1] + self.ref.height + self.gap + TITLE


@dataclass(frozen=True)
class Mid:
    """Halfway between the tops of ``a`` and ``b`` (a node feeding both)."""
    a: Node
    b: Node

    def refs(self):
        return (self.a, self.b)

    def top(self):
        return (self.a.pos[1] + self.b.pos[1]) // 2


Anchor = Union[At, Row, Below, Mid]
Item = Union[Node, tuple]   # a node, or (node, anchor)


def nodes(items) -> list:
    """The nodes of plan items (without their anchors)."""
    return [item[0] if isinstance(item, tuple) else item for item in items]


def _anchors(grid: Grid, plan: dict) -> dict:
    """node -> (x, anchor) for every node in ``plan``; a node without an anchor stands
    under the one above it (the first of a column at y 0)."""
    where = {}
    for name, items in plan.items():
        x, width = grid.x(name), grid.width(name)
        above = None
        for item in items:
            node, anchor = item if isinstance(item, tuple) else (item, None)
            if node in where:
                raise ValueError(f"{node.label!r} is placed twice")
            if node.size[0] > width:
                raise ValueError(f"{node.label!r} ({node.size[0]} wide) does not fit column {name} ({width})")
            where[node] = (x, anchor or (At(0) if above is None else Below(above)))
            above = node
    return where


def place(g: Graph, grid: Grid, plan: dict) -> None:
    """Sets every node's pos from ``plan`` (column name -> items, top-down); each node of
    ``g`` must be in it once."""
    where = _anchors(grid, plan)
    missing = [n.label for n in g.nodes if n not in where]
    if missing:
        raise ValueError(f"{g.name}: nodes not in the column plan: {missing}")
    placed, resolving = set(), set()

    def resolve(node: Node):
        if node in placed:
            return
        if node in resolving:
            raise ValueError(f"{g.name}: the anchors of {node.label!r} form a cycle")
        if node not in where:
            raise ValueError(f"{g.name}: an anchor refers to {node.label!r}, which is not in the plan")
        resolving.add(node)
        x, anchor = where[node]
        for ref in anchor.refs():
            resolve(ref)
        node.pos = (x, anchor.top())
        placed.add(node)

    for node in g.nodes:
        resolve(node)
