#!/usr/bin/env python3
"""Builds the example workflows from one Python description per graph.

Every workflow is written twice from the same description:

* ``<name>.json``          the frontend (UI) graph: drag it onto ComfyUI or open it from
                           the workflow templates browser (Workflow > Browse Templates >
                           the pack's folder name, e.g. ComfyUI-FastVMT).
* ``api/<name>.api.json``  the API format for ``POST /prompt`` and ``fastvmt_runner.py``.

Usage, from the repository root (standard library only, no ComfyUI needed)::

    python example_workflows/build.py                   # (re)write all files
    python example_workflows/build.py --check           # exit 1 if a committed file differs
    python example_workflows/build.py --check --live    # also: node schemas == a real ComfyUI's
    python example_workflows/build.py --update-schemas  # re-read the node schemas (needs ComfyUI)

Node inputs, widget order, widget defaults, output names and display names come from
``schemas/node_schemas.json``: the part of ComfyUI's ``/object_info`` the workflows use,
written by ``--update-schemas`` from a real ComfyUI with the pack loaded (in-process through
the comfy_host package, or ``--server HOST:PORT`` for a running server). Every widget of every node
gets a value in ``widgets_values`` (the one set here, else the schema's default), in the
schema's order, so the frontend never has to fill in missing ones. ``--live`` and
tests/test_workflows.py compare the snapshot with the live ``/object_info``: a node that
gains, loses or reorders an input fails there until the snapshot and the workflows are
rebuilt.

Why the folder is ``example_workflows/`` and the API files sit in ``api/``: ComfyUI
0.3.64 (app/custom_node_manager.py) serves a pack's ``example_workflows/`` (and, with
a log line suggesting the rename, ``workflows/``, ``examples/``, ...) under
``/api/workflow_templates/<pack>/`` and lists ``<pack>/<folder>/*.json`` in the
template browser. A second name (copy or symlink) would list every workflow twice, and
API files (or any other JSON) next to the UI files would show up as broken templates;
``api/`` and ``schemas/`` are served but not listed.

Template browser (frontend 1.27.10, ``useWorkflowTemplatesStore``): a custom-node template
is only its file name; the card's title is the name, its description the name with ``_``
turned into spaces, and its thumbnail ``<name>.jpg`` next to the JSON. So each workflow's
title and one-line description (``extra.fastvmt``) are drawn into that thumbnail by
``render_thumbnails.py``.

The builder lives in ``builder/`` (see its ``__init__``): the schema snapshot, the graph
model, the column-plan layout, the writers and one module per workflow family; the notes
are Markdown files in ``builder/notes/``. Layout rules checked for every workflow:
``builder/geometry.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
API_DIR = HERE / "api"
if str(HERE) not in sys.path:   # the builder package next to this script (also when loaded by path)
    sys.path.insert(0, str(HERE))

from builder.assets import MODEL_FILES, REFERENCE_VIDEO, SAVED_MOTION, SELFTEST_VIDEO, START_IMAGE  # noqa: E402
from builder.families import WORKFLOWS  # noqa: E402
from builder.geometry import check_layout, link_crossings, link_geometry, overlaps, slot_positions  # noqa: E402
from builder.graph import PORTRAIT, SUMMARY_NODES, VIDEO_W, Graph  # noqa: E402
from builder.schema import (NODE_TYPES, SCHEMA_FILE, SPECS, Input, Spec, check_schemas, schema_snapshot,  # noqa: E402
                            update_snapshot)
from builder.writers import dumps, thumbnail_key, to_api, to_ui  # noqa: E402
from builder.families.t2v import wf_guidance_sampler  # noqa: E402  (the tests build one workflow)

__all__ = ["MODEL_FILES", "REFERENCE_VIDEO", "SAVED_MOTION", "SELFTEST_VIDEO", "START_IMAGE", "NODE_TYPES",
           "SCHEMA_FILE", "SPECS", "Input", "Spec", "Graph", "PORTRAIT", "SUMMARY_NODES", "VIDEO_W", "check_layout",
           "link_crossings", "link_geometry", "overlaps", "slot_positions", "schema_snapshot", "thumbnail_key",
           "to_api", "to_ui", "graphs", "render_all", "main", "wf_guidance_sampler"]


def graphs() -> list:
    return [make() for make in WORKFLOWS]


def render_all() -> dict:
    """Relative path (from this folder) -> file text, for every workflow."""
    if not SPECS:
        raise SystemExit(f"{SCHEMA_FILE} is missing: run python example_workflows/build.py --update-schemas")
    files = {}
    for g in graphs():
        ui = to_ui(g)
        try:
            check_layout(g, ui)
        except ValueError as e:
            raise ValueError(f"{g.name}: {e}") from None
        files[f"{g.name}.json"] = dumps(ui)
        files[f"api/{g.name}.api.json"] = dumps(to_api(g))
    return files


def _stale(files: dict, present: set, live: bool, server) -> list:
    """What --check reports: files that differ, are missing or are not generated here,
    and (``live``) node schemas that differ from a real ComfyUI's."""
    bad = []
    for rel, text in sorted(files.items()):
        path = HERE / rel
        if not path.is_file():
            bad.append(f"missing: {rel}")
        elif path.read_text(encoding="utf-8") != text:
            bad.append(f"differs: {rel}")
    bad += [f"not generated by build.py: {rel}" for rel in sorted(present - set(files))]
    if live:
        bad += [f"{line} (run: python example_workflows/build.py --update-schemas)" for line in check_schemas(server)]
    return bad


def _write(files: dict, present: set) -> None:
    API_DIR.mkdir(exist_ok=True)
    for rel, text in sorted(files.items()):
        path = HERE / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
    for rel in sorted(present - set(files)):
        print(f"warning: {rel} is not generated by build.py (delete it if it is stale)", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if a committed file differs from what would be written")
    ap.add_argument("--live", action="store_true",
                    help="with --check: also compare schemas/node_schemas.json with a real ComfyUI's /object_info")
    ap.add_argument("--update-schemas", action="store_true",
                    help="rewrite schemas/node_schemas.json from a real ComfyUI with the pack, then build")
    ap.add_argument("--server", help="host:port of a running ComfyUI for --live / --update-schemas "
                                     "(default: boot ComfyUI in this process through the comfy_host package)")
    args = ap.parse_args(argv)
    if args.update_schemas and update_snapshot(args.server):
        print(f"wrote {SCHEMA_FILE.relative_to(SCHEMA_FILE.parents[1]).as_posix()}")
    files = render_all()
    present = {p.relative_to(HERE).as_posix() for p in list(HERE.glob("*.json")) + list(API_DIR.glob("*.json"))}
    if not args.check:
        _write(files, present)
        return 0
    bad = _stale(files, present, args.live, args.server)
    if bad:
        print("example workflows are out of date (run: python example_workflows/build.py):", file=sys.stderr)
        for line in bad:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"example workflows up to date ({len(files)} files" + (", node schemas live" if args.live else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
