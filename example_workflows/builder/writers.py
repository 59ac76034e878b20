"""A Graph written as the frontend's UI JSON and as the API JSON of ``POST /prompt``."""
from __future__ import annotations

import hashlib
import json
import uuid

from .assets import MODEL_FILES
from .geometry import first_view
from .graph import Graph, Node
from .schema import PACK_CNR_ID, SPECS, UPLOAD_WIDGET_VALUE, VIRTUAL_TYPES


def _topological_order(nodes) -> dict:
    order, seen = [], set()

    def visit(n):
        if n.id in seen:
            return
        seen.add(n.id)
        for ref in n.links.values():
            visit(ref.node)
        order.append(n)

    for n in nodes:
        visit(n)
    return {n.id: i for i, n in enumerate(order)}


def widgets_values(n: Node) -> list:
    """Every widget row of the node, in the schema's order: the value set in the
    description, else the schema's default (also for a widget whose input is linked: the
    frontend keeps a value there)."""
    spec = SPECS[n.type]
    wv = []
    for name, kind in spec.widget_rows():
        if kind == "value":
            wv.append(n.values[name] if name in n.values else spec.input(name).default)
        elif kind == "control":
            wv.append("fixed")
        else:
            wv.append(UPLOAD_WIDGET_VALUE)
    return wv


def _ui_links(g: Graph) -> tuple[list, dict, dict]:
    """(links [id, origin, origin slot, target, target slot, type], {(node id, output
    slot): [link ids]}, {node id: inputs}). A node's inputs are its sockets, then its
    linked widgets; links are numbered in node and schema order."""
    links, out_links, node_inputs = [], {}, {}
    for n in g.nodes:
        if n.type in VIRTUAL_TYPES:
            continue
        sockets, widget_inputs = [], []
        for inp in SPECS[n.type].inputs:
            ref = n.links.get(inp.name)
            if inp.widget and ref is None:
                continue
            entry = {"name": inp.name, "type": inp.type, "link": None}
            if ref is not None:
                entry["link"] = len(links) + 1
                links.append([entry["link"], ref.node.id, ref.slot, n.id, None,
                              SPECS[ref.node.type].outputs[ref.slot][1]])
                out_links.setdefault((ref.node.id, ref.slot), []).append(entry["link"])
            if inp.widget:
                entry["widget"] = {"name": inp.name}
                widget_inputs.append(entry)
            else:
                if inp.optional:
                    entry["shape"] = 7
                sockets.append(entry)
        node_inputs[n.id] = sockets + widget_inputs
        for slot, entry in enumerate(node_inputs[n.id]):
            if entry["link"] is not None:
                links[entry["link"] - 1][4] = slot
    return links, out_links, node_inputs


def _ui_node(n: Node, order: int, inputs: list, out_links: dict) -> dict:
    d = {"id": n.id, "type": n.type, "pos": list(n.pos), "size": list(n.size), "flags": {}, "order": order,
         "mode": 0}
    if n.type in VIRTUAL_TYPES:
        d.update(inputs=[], outputs=[], title=n.title, properties={}, widgets_values=[n.values["text"]])
    else:
        spec = SPECS[n.type]
        d["inputs"] = inputs
        d["outputs"] = [{"name": name, "type": typ, "links": out_links.get((n.id, i), []), "slot_index": i}
                        for i, (name, typ) in enumerate(spec.outputs)]
        if n.title:
            d["title"] = n.title
        props = {"cnr_id": "comfy-core" if spec.core else PACK_CNR_ID, "Node name for S&R": n.type}
        models = [{"name": v, "url": MODEL_FILES[v][1], "directory": MODEL_FILES[v][0]}
                  for v in n.values.values() if isinstance(v, str) and v in MODEL_FILES]
        if models:
            props["models"] = models
        d["properties"] = props
        d["widgets_values"] = widgets_values(n)
    if n.color:
        d["color"], d["bgcolor"] = n.color
    return d


def _stable_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-fastvmt/example_workflows/{name}"))


def to_ui(g: Graph) -> dict:
    links, out_links, node_inputs = _ui_links(g)
    order = _topological_order(g.nodes)
    nodes = [_ui_node(n, order[n.id], node_inputs.get(n.id), out_links) for n in g.nodes]
    groups = [{"id": i, "title": grp.title, "bounding": grp.bounding(), "color": grp.color, "font_size": 24,
               "flags": {}} for i, grp in enumerate(g.groups, 1)]
    return {
        "id": _stable_uuid(g.name),
        "revision": 0,
        "last_node_id": len(g.nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": groups,
        "config": {},
        "extra": {"ds": first_view(g), "fastvmt": {"title": g.title, "description": g.description}},
        "version": 0.4,
    }


def to_api(g: Graph) -> dict:
    prompt = {}
    for n in g.nodes:
        if n.type in VIRTUAL_TYPES:
            continue
        spec = SPECS[n.type]
        inputs = {}
        for inp in spec.inputs:
            if inp.name in n.links:
                ref = n.links[inp.name]
                inputs[inp.name] = [str(ref.node.id), ref.slot]
            elif inp.name in n.values:
                inputs[inp.name] = n.values[inp.name]
            elif inp.widget and inp.has_default:
                inputs[inp.name] = inp.default
        prompt[str(n.id)] = {"inputs": inputs, "class_type": n.type, "_meta": {"title": n.title or spec.display}}
    return prompt


def thumbnail_key(ui: dict) -> str:
    """Digest of what a template thumbnail shows (title, description, nodes, links,
    groups): render_thumbnails.py writes it into the JPEG, tests/test_workflows.py fails
    when a thumbnail is older than its workflow."""
    shown = {
        "extra": ui["extra"].get("fastvmt"),
        "nodes": [[n["id"], n["type"], n.get("title"), n["pos"], n["size"]] for n in ui["nodes"]],
        "links": ui["links"],
        "groups": [[gr["title"], gr["bounding"]] for gr in ui["groups"]],
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:16]


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
