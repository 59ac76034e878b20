"""The self-test of ``fastvmt_runner --selftest``: which nodes score the plain and the
FastVMT run (and the run with the released code's flow), their scores in a finished run, and
the block a user pastes into an issue.

Plain functions on API prompts, ``/history`` entries and ``/system_stats``; no network and
no ComfyUI import (the runner does the I/O). The workflow is
``example_workflows/api/fastvmt_selftest_wan21_t2v.api.json``: the shipped clip
(``example_workflows/input/``), one prompt and seed sampled by a plain KSampler and by the
FastVMT Guidance Sampler, a Motion Fidelity node for each, and a side-by-side video.
"""
from __future__ import annotations

import re

from .workflow import PACK_DIR, is_link

WORKFLOW = "fastvmt_selftest_wan21_t2v"
CLIP = PACK_DIR / "example_workflows" / "input" / "fastvmt_selftest_reference.mp4"
ISSUES_URL = "https://github.com/fastvmt/ComfyUI-FastVMT/issues"

FIDELITY = "FastVMTMotionFidelity"
# nodes that put FastVMT's guidance into a sampling run
FASTVMT_SAMPLING = {"FastVMTGuidanceSampler", "FastVMTApplyMotion"}
SCORE_LINE = re.compile(r"^Motion fidelity: (-?\d+(?:\.\d+)?)", re.MULTILINE)

READING = f"""\
Reading it: 1 = the reference's motion, about 0 = unrelated or still. With real Wan weights
FastVMT's score should be clearly above the plain run's. That is an expectation from the
paper, not a measurement: the pack has not been run on Wan weights by its authors.
In the video, the FastVMT clips (third: the paper's flow; fourth: the released code's) should
move like the reference (left: a figure running from left to right while the camera pans to
follow); the plain one (second) moves as the prompt and seed happen to make it.
Report: open an issue at {ISSUES_URL}
titled "Self-test: <GPU>, <model>" and paste the block between the lines. A run where
FastVMT does not come out ahead is as useful as one where it does. The third score uses the
authors' released flow (flow_definition 'released', the code behind the paper's figures); which
of the two transfers motion better on real Wan is not known yet: your numbers decide it."""


def upstream(prompt: dict, nid: str) -> set:
    """Ids of every node that feeds ``nid``, directly or not."""
    seen, todo = set(), [nid]
    while todo:
        for v in prompt.get(todo.pop(), {}).get("inputs", {}).values():
            if is_link(v) and v[0] in prompt and v[0] not in seen:
                seen.add(v[0])
                todo.append(v[0])
    return seen


def upstream_types(prompt: dict, nid: str) -> set:
    """Class types of every node that feeds ``nid``, directly or not."""
    return {prompt[i]["class_type"] for i in upstream(prompt, nid)}


def _run_kind(prompt: dict, source: str) -> str:
    """"plain", "fastvmt" (the paper's flow) or "released" (flow_definition 'released')."""
    feeding = upstream(prompt, source)
    if not {prompt[i]["class_type"] for i in feeding} & FASTVMT_SAMPLING:
        return "plain"
    released = any(prompt[i]["class_type"] == "FastVMTStepSkipSettings"
                   and prompt[i]["inputs"].get("flow_definition") == "released" for i in feeding)
    return "released" if released else "fastvmt"


def score_nodes(prompt: dict) -> dict:
    """{"plain": id, "fastvmt": id[, "released": id]}: the Motion Fidelity node whose generated
    frames come from a run without FastVMT, the one scoring a FastVMT run with the paper's flow,
    and (optional) the one scoring a run with the released code's flow."""
    found = {"plain": [], "fastvmt": [], "released": []}
    for nid, node in prompt.items():
        if node["class_type"] != FIDELITY or not is_link(node["inputs"].get("generated")):
            continue
        found[_run_kind(prompt, node["inputs"]["generated"][0])].append(nid)
    if len(found["plain"]) != 1 or len(found["fastvmt"]) != 1 or len(found["released"]) > 1:
        raise ValueError(f"--selftest: the workflow needs one Motion Fidelity node scoring a run without FastVMT "
                         f"and one scoring a FastVMT run (and at most one scoring a flow_definition 'released' "
                         f"run); it has {len(found['plain'])} and {len(found['fastvmt'])} "
                         f"(and {len(found['released'])}). Use the shipped {WORKFLOW} (the default) or a copy of it")
    return {kind: ids[0] for kind, ids in found.items() if ids}


def read_score(entry: dict, nid: str) -> tuple:
    """(score, report) of Motion Fidelity node ``nid`` in a finished run's history entry."""
    text = entry.get("outputs", {}).get(nid, {}).get("text")
    report = "\n".join(text) if isinstance(text, list) else text
    m = SCORE_LINE.search(report or "")
    if m is None:
        raise ValueError(f"Motion Fidelity node {nid} left no score in the run's history (its report: {report!r})")
    return float(m.group(1)), report


def run_settings(prompt: dict) -> dict:
    """What the report names: model file(s), size, motion block, and the prompt, steps,
    sampler, cfg and seed of the samplers (one prompt and one setting for both runs in
    the shipped workflow; the first sampler's where they differ)."""
    out = {"models": sorted({n["inputs"]["unet_name"] for n in prompt.values()
                             if isinstance(n["inputs"].get("unet_name"), str)})}
    for nid in sorted(prompt, key=lambda k: (len(k), k)):
        node, i = prompt[nid], prompt[nid]["inputs"]
        if node["class_type"] == "FastVMTExtractMotion":
            out["size"] = f"{i.get('width')}x{i.get('height')}, {i.get('length')} frames"
            out["motion_block"] = i.get("motion_block")
        elif "steps" in i and "cfg" in i:   # a sampler
            out.setdefault("sampling", f"{i['steps']} steps {i.get('sampler_name')}/{i.get('scheduler')}, "
                                       f"cfg {i.get('cfg'):g}, seed {i.get('seed', i.get('noise_seed'))}")
            positive = i.get("positive")
            text = prompt.get(positive[0], {}).get("inputs", {}).get("text") if is_link(positive) else None
            if isinstance(text, str):
                out.setdefault("prompt", text)
    return out


def system_line(stats: dict) -> str:
    """ComfyUI and torch versions and the first device, from ``/system_stats``."""
    system = stats.get("system", {}) if isinstance(stats, dict) else {}
    dev = ((stats.get("devices") if isinstance(stats, dict) else None) or [{}])[0]
    vram = dev.get("vram_total")
    memory = f" ({vram / 2 ** 30:.1f} GiB)" if isinstance(vram, (int, float)) and vram > 0 else ""
    return (f"ComfyUI {system.get('comfyui_version', '?')}, torch {system.get('pytorch_version', '?')}, "
            f"{dev.get('name', dev.get('type', '?'))}{memory}")


def summary(prompt: dict, entry: dict, stats: dict, seconds: float, videos: list) -> str:
    """The block the runner prints: settings, system, both scores, their difference and the
    side-by-side video, then how to read and report it."""
    ids = score_nodes(prompt)
    (plain, plain_report), (guided, guided_report) = (read_score(entry, ids[k]) for k in ("plain", "fastvmt"))
    released = read_score(entry, ids["released"]) if "released" in ids else None
    s = run_settings(prompt)

    def details(report: str) -> str:   # the report's lines after the score, without the drawing's legend
        return "".join(f"\n      {line}" for line in report.splitlines()[1:] if not line.startswith("visualisation"))

    lines = ["-" * 72, "FastVMT self-test",
             f"  model:    {', '.join(s['models']) or '?'} (motion_block {s.get('motion_block', '?')})",
             f"  run:      {s.get('size', '?')}, {s.get('sampling', '?')}",
             f"  prompt:   {s.get('prompt', '?')}",
             f"  system:   {system_line(stats)}",
             f"  time:     {seconds:.0f} s (all runs, extraction and scoring)",
             f"  motion fidelity, plain (no FastVMT): {plain:.4f}{details(plain_report)}",
             f"  motion fidelity, FastVMT:           {guided:.4f}{details(guided_report)}",
             f"  FastVMT - plain: {guided - plain:+.4f}"]
    if released is not None:
        lines += [f"  motion fidelity, released code:     {released[0]:.4f}{details(released[1])}",
                  f"  released - plain: {released[0] - plain:+.4f}"]
    columns = "reference | plain | FastVMT" + (" | released" if released is not None else "")
    lines += [f"  video ({columns}): {v}" for v in videos]
    return "\n".join(lines + ["-" * 72, READING])
