"""Running API-format graphs: ComfyUI's ``validate_prompt`` and ``PromptExecutor`` as the
/prompt route and the prompt worker use them, and what a run returns (``GraphResult``)."""
from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ._runtime import STATE, run_coro, take_messages

CLIENT_ID = "fastvmt-tests"


class GraphValidationError(AssertionError):
    """ComfyUI's validator rejected a graph.  ``.error`` / ``.node_errors`` hold
    the same data ComfyUI's ``/prompt`` endpoint would return."""

    def __init__(self, message, error=None, node_errors=None):
        super().__init__(message)
        self.error = error
        self.node_errors = node_errors or {}


@dataclass
class ValidationResult:
    valid: bool
    error: Optional[dict]
    outputs: list
    node_errors: dict

    def describe(self) -> str:
        return format_validation(self.error, self.node_errors)


def format_validation(error, node_errors) -> str:
    lines = []
    if error:
        lines.append(f"{error.get('type')}: {error.get('message')}")
        if error.get("details"):
            lines.append(f"  {error['details']}")
    for nid, info in (node_errors or {}).items():
        lines.append(f"node {nid} ({info.get('class_type')}):")
        for e in info.get("errors", []):
            lines.append(f"  - [{e.get('type')}] {e.get('message')}: {e.get('details')}")
    return "\n".join(lines)


@dataclass
class GraphResult:
    """Outcome of one ``run_graph`` call."""

    prompt_id: str
    success: bool                    # False on a node exception, an interrupt, or a blocked node with a message
    error: Optional[dict]            # data of the execution_error / execution_interrupted message
    events: list                     # [(event, data), ...] as sent to the client
    status_messages: list            # executor.status_messages
    history: dict                    # executor.history_result: {"outputs": ..., "meta": ...}
    targets: list                    # node ids executed as outputs
    node_errors: dict                # non-fatal validation node errors (usually empty)
    seconds: float
    _outputs: dict = field(default_factory=dict, repr=False)
    _class_types: dict = field(default_factory=dict, repr=False)

    # --- errors ----------------------------------------------------------
    @property
    def exception_type(self) -> Optional[str]:
        return (self.error or {}).get("exception_type")

    @property
    def exception_message(self) -> Optional[str]:
        return (self.error or {}).get("exception_message")

    @property
    def error_node(self) -> Optional[str]:
        return (self.error or {}).get("node_id")

    def error_text(self) -> str:
        if self.success:
            return "success"
        e = self.error or {}
        tb = "".join(e.get("traceback") or [])
        return (f"node {e.get('node_id')} ({e.get('node_type')}) failed: "
                f"{e.get('exception_type')}: {e.get('exception_message')}\n{tb}").rstrip()

    def raise_for_error(self) -> "GraphResult":
        if not self.success:
            raise AssertionError(self.error_text())
        return self

    # --- outputs ---------------------------------------------------------
    @property
    def ui(self) -> dict:
        """UI outputs per node id (``history['outputs']``)."""
        return self.history.get("outputs", {})

    def ui_output(self, node_id) -> dict:
        return self.ui.get(str(node_id), {})

    @property
    def node_ids_with_output(self) -> list:
        return sorted(self._outputs)

    def output_lists(self, node_id) -> list:
        """Raw cached value: one list per output socket, one entry per list-item
        execution (what ``executor.caches.outputs.get(node_id)`` returns)."""
        nid = str(node_id)
        if nid not in self._outputs:
            raise KeyError(f"node {nid!r} has no cached output (nodes with outputs: {self.node_ids_with_output}; "
                           f"success={self.success})")
        return self._outputs[nid]

    def output(self, node_id, index: Optional[int] = None):
        """Python output values of a node: a tuple with one entry per output
        socket (or just socket ``index``).  A socket's value is unwrapped when
        the node ran once; ``OUTPUT_IS_LIST`` sockets / list executions give lists."""
        raw = self.output_lists(node_id)
        is_list = _output_is_list(self._class_types.get(str(node_id)), len(raw))
        vals = []
        for i, v in enumerate(raw):
            v = list(v) if isinstance(v, (list, tuple)) else [v]
            vals.append(v if is_list[i] or len(v) != 1 else v[0])
        vals = tuple(vals)
        return vals if index is None else vals[index]

    # --- events ----------------------------------------------------------
    def events_of(self, kind: str) -> list:
        return [d for (e, d) in self.events if e == kind]

    @property
    def executed_nodes(self) -> list:
        """Node ids that actually ran (``executing`` events), in order."""
        return [d.get("node") for d in self.events_of("executing") if d.get("node") is not None]

    @property
    def cached_nodes(self) -> list:
        out = []
        for d in self.events_of("execution_cached"):
            out.extend(d.get("nodes", []))
        return out


def _output_is_list(class_type: Optional[str], n: int) -> list:
    flags = None
    if class_type:
        try:
            import nodes
            cls = nodes.NODE_CLASS_MAPPINGS.get(class_type)
            flags = getattr(cls, "OUTPUT_IS_LIST", None) if cls is not None else None
        except Exception:  # noqa: BLE001
            flags = None
    flags = list(flags or [])
    return [bool(flags[i]) if i < len(flags) else False for i in range(n)]


# ---------------------------------------------------------------------------
# validation and execution
# ---------------------------------------------------------------------------

def _is_link(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], (str, int))
            and not isinstance(v[0], bool) and isinstance(v[1], int) and not isinstance(v[1], bool))


def normalise_graph(graph: dict) -> dict:
    """Deep copy (the executor writes into the prompt dict) and turn node ids
    into strings, as they are after the JSON round trip through /prompt."""
    if not isinstance(graph, dict):
        raise TypeError("graph must be an API-format dict {node_id: {class_type, inputs}}")
    g = copy.deepcopy(graph)
    out = {}
    for nid, node in g.items():
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            for k, v in list(node["inputs"].items()):
                if _is_link(v) and isinstance(v[0], int):
                    node["inputs"][k] = [str(v[0]), v[1]]
                elif isinstance(v, tuple) and _is_link(v):
                    node["inputs"][k] = [v[0], v[1]]
        out[str(nid)] = node
    return out


def output_targets(outputs: Optional[Iterable]) -> Optional[list]:
    """The output nodes to execute: ``outputs``, or None for all of the graph's (ComfyUI's
    own choice in ``validate_prompt``). Only output nodes can be targets, as in ComfyUI:
    inspect a value with a FastVMTTestInspect node."""
    return None if outputs is None else [str(o) for o in outputs]


async def validate_async(graph: dict, targets: Optional[list], prompt_id: str) -> ValidationResult:
    import execution
    valid, error, good, node_errors = await execution.validate_prompt(prompt_id, graph, targets)
    return ValidationResult(bool(valid), error, list(good), node_errors or {})


def _validated(host, g: dict, outputs, prompt_id: str, strict: bool) -> ValidationResult:
    """Validate or raise GraphValidationError (with the pack's import error when a node type
    is missing because the pack failed to load)."""
    v = run_coro(validate_async(g, output_targets(outputs), prompt_id))
    msg = format_validation(v.error, v.node_errors)
    if not v.valid or (strict and v.node_errors):
        if host.pack_error and "does not exist" in msg:
            msg += "\nnote: the FastVMT pack failed to load:\n" + host.pack_error[-2000:]
        raise GraphValidationError("ComfyUI rejected the graph:\n" + msg, v.error, v.node_errors)
    return v


def _execute(host, g: dict, prompt_id: str, targets: list, keep_cache: bool, extra_data) -> tuple[list, float]:
    """Run the validated graph as main.py's prompt worker does; returns the messages sent
    to the client and the seconds it took."""
    ex, srv = host.executor, host.server
    if not keep_cache:
        ex.reset()
    take_messages(srv)
    srv.last_prompt_id = prompt_id  # as main.py's prompt_worker does
    data = {"client_id": CLIENT_ID}
    data.update(extra_data or {})
    t0 = time.perf_counter()
    run_coro(ex.execute_async(g, prompt_id, data, list(targets)))
    seconds = time.perf_counter() - t0
    if srv.client_id is not None:  # prompt_worker's "prompt done" message
        srv.send_sync("executing", {"node": None, "prompt_id": prompt_id}, srv.client_id)
    return [(e, d) for (e, d, _sid) in take_messages(srv)], seconds


def _run_error(ex, events: list) -> Optional[dict]:
    error = None
    for ev, d in ex.status_messages:
        if ev in ("execution_error", "execution_interrupted"):
            error = d
    if error is None:
        # a node blocked execution with a message (ExecutionBlocker): ComfyUI
        # sends execution_error but still reports the prompt as successful
        error = next((d for (e, d) in events if e == "execution_error"), None)
    return error


def _collect_outputs(outputs_cache, g: dict) -> tuple[dict, dict]:
    """Cached output values per node id and the class type of each such node."""
    collected = {}
    try:
        ids = outputs_cache.all_node_ids()
    except AssertionError:
        ids = set()
    for nid in ids:
        val = outputs_cache.get(nid)
        if val is not None:
            collected[str(nid)] = val
    class_types = {}
    dp_nodes = {nid: n.get("class_type") for nid, n in g.items()}
    for nid in collected:
        ct = dp_nodes.get(nid)
        if ct is None:
            try:
                ct = outputs_cache.dynprompt.get_node(nid).get("class_type")
            except Exception:  # noqa: BLE001
                ct = None
        class_types[nid] = ct
    return collected, class_types


def execute_graph(host, graph: dict, *, outputs: Optional[Iterable] = None, prompt_id: Optional[str] = None,
                  keep_cache: bool = False, extra_data: Optional[dict] = None,
                  strict: bool = True, check: bool = False) -> GraphResult:
    """``ComfyHost.run_graph`` (see there) on ``host``."""
    import comfy.model_management
    import hook_breaker_ac10a0

    with STATE.lock:
        prompt_id = prompt_id or str(uuid.uuid4())
        v = _validated(host, normalise_graph(graph), outputs, prompt_id, strict)
        g = normalise_graph(graph)  # validation may annotate the dict
        events, seconds = _execute(host, g, prompt_id, v.outputs, keep_cache, extra_data)
        ex = host.executor
        error = _run_error(ex, events)
        collected, class_types = _collect_outputs(ex.caches.outputs, g)
        host.runs += 1
        hook_breaker_ac10a0.restore_functions()
        if comfy.model_management.DISABLE_SMART_MEMORY:
            comfy.model_management.unload_all_models()
        res = GraphResult(
            prompt_id=prompt_id, success=bool(ex.success) and error is None, error=error, events=events,
            status_messages=list(ex.status_messages), history=copy.copy(getattr(ex, "history_result", {}) or {}),
            targets=list(v.outputs), node_errors=v.node_errors, seconds=seconds,
            _outputs=collected, _class_types=class_types)
        if check:
            res.raise_for_error()
        return res

