"""In-process ComfyUI host for FastVMT tests and benchmarks (both import this module).

Runs API-format prompt graphs through ComfyUI's own machinery inside the test process:
``execution.validate_prompt`` (as the /prompt route), ``execution.PromptExecutor`` (as
the prompt worker), ComfyUI's ``server.PromptServer`` object (its messages are read from
its queue; no port is opened) and ``main.hijack_progress`` for progress messages. Graphs
must have output nodes, as in ComfyUI (``FastVMTTestInspect`` returns any value to the
test); build them with ``comfy_execution.graph_utils.GraphBuilder``.  Models are tiny
random-weight Wan checkpoints written with the
exact key names / shapes of the real ones, so ComfyUI's own loaders
(``UNETLoader``, ``VAELoader``, ``comfy.sd.*``) detect and load them.

Typical use (the fixtures in ``tests/conftest.py`` do the bootstrap)::

    from comfy_host import run_graph
    res = run_graph(graph)            # validates, executes, returns GraphResult
    res.raise_for_error()
    (latent,) = res.output("5")       # python output values of node "5" (any executed node)

Everything that ComfyUI writes (models, input, output, temp, user) goes to a
temporary base directory, never into the ComfyUI checkout.

Environment variables:
    COMFYUI_PATH          ComfyUI checkout to use (else see ``find_comfyui``).
    FASTVMT_COMFY_CPU     "1" (default) forces ComfyUI's CPU mode; "0" lets
                          ComfyUI pick its device (e.g. on a GPU machine).
    FASTVMT_TEST_CACHE    Directory for cached generated weights (tiny VAE);
                          default ``$XDG_CACHE_HOME/fastvmt-tests`` or
                          ``~/.cache/fastvmt-tests``.
    FASTVMT_TORCH_THREADS torch intra-op threads (default: 1 on <= 4 CPUs).

Gotchas worth knowing when writing tests:
  * The executor runs every node under ``torch.inference_mode()``: outputs
    *and the weights of models loaded by loader nodes* are inference tensors.
    ``.clone()`` before in-place edits; autograd through such a model fails
    ("Inference tensors cannot be saved for backward") unless the weights
    used are cloned inside ``torch.inference_mode(False)``.
  * By default caches are reset per run (every node executes); pass
    ``keep_cache=True`` to get ComfyUI's normal cross-prompt caching.
  * ``import comfy.x`` inside a test whose fixture argument is named
    ``comfy`` rebinds that name; use ``import comfy.x as x``.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

__all__ = [
    "REPO_ROOT",
    "TEST_NODES_DIR",
    "CLIENT_ID",
    "ComfyUINotFound",
    "PackLoadError",
    "GraphValidationError",
    "ComfyHost",
    "GraphResult",
    "ValidationResult",
    "find_comfyui",
    "comfyui_version",
    "bootstrap",
    "get_host",
    "run_graph",
    "validate_graph",
    "make_tiny_wan",
    "make_tiny_ltxv",
    "make_tiny_wan_vae",
    "cached_tiny_wan_vae",
    "tiny_wan_state_dict",
    "cache_dir",
]

REPO_ROOT = Path(__file__).resolve().parent
TEST_NODES_DIR = REPO_ROOT / "comfy_host_nodes"  # the stand-in nodes (test-only conditioning, latents)
CLIENT_ID = "fastvmt-tests"

# Bump when the way tiny weights are generated changes (invalidates caches).
WEIGHTS_VERSION = "1"

# The module may end up imported twice under different names (e.g. as
# ``comfy_host`` and ``<repo>.comfy_host`` when pytest treats the repo root as a
# package).  Keep one process-wide state and make the canonical name resolve to
# the first copy.
_STATE_KEY = "_fastvmt_comfy_host_state"
_STATE = sys.modules.get(_STATE_KEY)
if _STATE is None:
    _STATE = types.ModuleType(_STATE_KEY)
    _STATE.host = None
    _STATE.lock = threading.RLock()
    sys.modules[_STATE_KEY] = _STATE
if __name__ != "comfy_host":
    sys.modules.setdefault("comfy_host", sys.modules[__name__])

log = logging.getLogger("fastvmt.comfy_host")


class ComfyUINotFound(RuntimeError):
    """No usable ComfyUI checkout was found."""


class PackLoadError(RuntimeError):
    """The FastVMT node pack (repo root) is missing or failed to import."""


class GraphValidationError(AssertionError):
    """ComfyUI's validator rejected a graph.  ``.error`` / ``.node_errors`` hold
    the same data ComfyUI's ``/prompt`` endpoint would return."""

    def __init__(self, message, error=None, node_errors=None):
        super().__init__(message)
        self.error = error
        self.node_errors = node_errors or {}


# ---------------------------------------------------------------------------
# locating ComfyUI
# ---------------------------------------------------------------------------

def _is_comfyui(p: Optional[Path]) -> bool:
    if p is None:
        return False
    try:
        return (p / "main.py").is_file() and (p / "comfy").is_dir() and (p / "execution.py").is_file()
    except OSError:
        return False


def find_comfyui() -> Optional[Path]:
    """Return the ComfyUI checkout to use, or None.

    Order: ``$COMFYUI_PATH``; the ComfyUI that contains this pack when the repo
    sits at ``ComfyUI/custom_nodes/<pack>``; ``~/comfy/ComfyUI``.  A candidate
    counts only if it has ``main.py``, ``comfy/`` and ``execution.py``.
    """
    candidates = []
    env = os.environ.get("COMFYUI_PATH")
    if env:
        candidates.append(Path(env).expanduser())
    if REPO_ROOT.parent.name == "custom_nodes":
        candidates.append(REPO_ROOT.parent.parent)
    candidates.append(Path.home() / "comfy" / "ComfyUI")
    for c in candidates:
        if _is_comfyui(c):
            return c.resolve()
    return None


GGUF_PACK_NAME = "ComfyUI-GGUF"


def find_gguf_pack(comfyui_path: Optional[Path] = None) -> Optional[Path]:
    """city96's ComfyUI-GGUF node pack, for the GGUF tests, or None.

    Order: ``$COMFYUI_GGUF_PATH``; ``<ComfyUI>/custom_nodes/ComfyUI-GGUF`` (where a user
    installs it). A candidate counts only if it has ``nodes.py`` and ``loader.py``.
    """
    candidates = []
    env = os.environ.get("COMFYUI_GGUF_PATH")
    if env:
        candidates.append(Path(env).expanduser())
    comfy = comfyui_path or find_comfyui()
    if comfy is not None:
        candidates.append(Path(comfy) / "custom_nodes" / GGUF_PACK_NAME)
    for c in candidates:
        if (c / "nodes.py").is_file() and (c / "loader.py").is_file():
            return c.resolve()
    return None


def comfyui_version(path: Optional[Path] = None) -> Optional[str]:
    """ComfyUI version read from ``comfyui_version.py`` (without importing it)."""
    path = path or find_comfyui()
    if path is None:
        return None
    try:
        text = (Path(path) / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    m = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return m.group(1) if m else None


def cache_dir() -> Path:
    """Directory for generated weights cached across test sessions."""
    env = os.environ.get("FASTVMT_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fastvmt-tests"


def _run_coro(coro):
    """Run a coroutine to completion on the host's event loop (the loop ComfyUI's
    PromptServer sends its messages through), or on a fresh one in a thread when called
    from a running loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        loop = getattr(_STATE, "loop", None)
        # (not inside the except block: exceptions raised by the coroutine
        # would otherwise carry "no running event loop" as their context)
        return loop.run_until_complete(coro) if loop is not None else asyncio.run(coro)
    box = {}

    def runner():
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=runner, name="fastvmt-comfy-coro")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def text(self, min_level=logging.WARNING) -> str:
        out = []
        for r in self.records:
            if r.levelno >= min_level:
                try:
                    out.append(r.getMessage())
                except Exception:  # noqa: BLE001
                    out.append(str(r.msg))
        return "\n".join(out)


class _capture_logs:
    def __enter__(self) -> _LogCapture:
        self.handler = _LogCapture()
        self.root = logging.getLogger()
        self.old_level = self.root.level
        self.root.addHandler(self.handler)
        if self.root.level > logging.INFO or self.root.level == logging.NOTSET:
            self.root.setLevel(logging.INFO)
        return self.handler

    def __exit__(self, *exc):
        self.root.removeHandler(self.handler)
        self.root.setLevel(self.old_level)
        return False


# ---------------------------------------------------------------------------
# preparing the ComfyUI import environment
# ---------------------------------------------------------------------------

def _module_location(mod) -> str:
    locs = list(getattr(mod, "__path__", None) or []) or [getattr(mod, "__file__", None) or "?"]
    return str(locs[0])


def _module_is_under(mod, root: Path) -> bool:
    locs = list(getattr(mod, "__path__", None) or []) or [getattr(mod, "__file__", None)]
    for loc in locs:
        if loc and (root == Path(loc).resolve() or root in Path(loc).resolve().parents):
            return True
    return False


def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return default
    return v.strip().lower() not in ("0", "false", "no", "off")


def prepare_comfy_imports(comfyui_path: Optional[Path] = None, base_dir: Optional[Path] = None,
                           cpu: Optional[bool] = None) -> Path:
    """Put ComfyUI first on sys.path and configure ``comfy.cli_args.args``
    (CPU mode, base directory) before anything reads them.  Idempotent."""
    with _STATE.lock:
        prepared = getattr(_STATE, "prepared", None)
        if prepared is not None:
            if comfyui_path is not None and Path(comfyui_path).resolve() != prepared:
                raise RuntimeError(f"ComfyUI already prepared from {prepared}, cannot switch to {comfyui_path}")
            return prepared

        path = Path(comfyui_path).resolve() if comfyui_path else find_comfyui()
        if path is None or not _is_comfyui(path):
            raise ComfyUINotFound(
                "ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI "
                "(or place this repo at ComfyUI/custom_nodes/<pack>)")
        p = str(path)
        while p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)

        # Top-level names ComfyUI relies on must not already be taken by other
        # modules (e.g. a pack's own nodes.py imported as "nodes").
        for name in ("comfy", "nodes", "execution", "folder_paths", "server", "comfy_execution",
                     "comfy_extras", "comfy_api", "node_helpers", "latent_preview"):
            mod = sys.modules.get(name)
            if mod is not None and not _module_is_under(mod, path):
                raise RuntimeError(f"module {name!r} is already imported from {_module_location(mod)}, "
                                   f"not from ComfyUI at {path}; it shadows ComfyUI's module")

        if cpu is None:
            cpu = _env_flag("FASTVMT_COMFY_CPU", True)

        # comfy.cli_args parses [] unless comfy.options.enable_args_parsing()
        # was called (main.py does that), so pytest's argv is never read.
        import comfy.options  # noqa: F401
        from comfy.cli_args import args

        if "comfy.model_management" not in sys.modules:
            if cpu:
                args.cpu = True
        elif cpu:
            import comfy.model_management as mm
            if mm.cpu_state != mm.CPUState.CPU:
                log.warning("comfy.model_management was imported before the test host; CPU mode not forced")
        # main.py imports ComfyUI's ``utils`` package before ``nodes`` (which puts
        # ComfyUI/comfy first on sys.path, where comfy/utils.py would shadow it;
        # server.py -> app.frontend_management then fails on utils.install_util).
        u = sys.modules.get("utils")
        if u is None:
            try:
                import utils.extra_config  # noqa: F401
            except Exception as e:  # noqa: BLE001
                log.warning("could not import ComfyUI's utils package: %s", e)
        elif not _module_is_under(u, path):
            log.warning("a foreign 'utils' module is imported (%s); ComfyUI's server import may fail",
                        _module_location(u))
        if base_dir is not None and "folder_paths" not in sys.modules:
            args.base_directory = str(base_dir)
        args.disable_api_nodes = True
        args.disable_all_custom_nodes = True
        args.database_url = "sqlite:///:memory:"
        args.disable_auto_launch = True
        args.auto_launch = False
        _STATE.prepared = path
        _STATE.cpu = bool(cpu)
        return path


def take_messages(server) -> list:
    """Messages ComfyUI's PromptServer queued for its websocket clients since the last call
    (``send_sync`` schedules them on the host loop; one turn of the loop delivers them)."""
    _STATE.loop.run_until_complete(asyncio.sleep(0))
    out = []
    while not server.messages.empty():
        out.append(server.messages.get_nowait())
    return out


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

@dataclass
class ValidationResult:
    valid: bool
    error: Optional[dict]
    outputs: list
    node_errors: dict

    def describe(self) -> str:
        return _format_validation(self.error, self.node_errors)


def _format_validation(error, node_errors) -> str:
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
# the host
# ---------------------------------------------------------------------------

def _is_link(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 2 and isinstance(v[0], (str, int))
            and not isinstance(v[0], bool) and isinstance(v[1], int) and not isinstance(v[1], bool))


def _normalise_graph(graph: dict) -> dict:
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


class ComfyHost:
    """ComfyUI booted in-process (one per process; see ``bootstrap``)."""

    def __init__(self, comfyui_path: Path, base_dir: Path, cpu: bool):
        self.comfyui_path = comfyui_path
        self.base_dir = base_dir
        self.cpu = cpu
        self.version = comfyui_version(comfyui_path)
        self.builtin_import_failures: list[str] = []
        self.builtin_node_names: set[str] = set()
        self.test_node_names: list[str] = []
        self.pack_present = (REPO_ROOT / "__init__.py").is_file()
        self.pack_loaded = False
        self.pack_node_names: list[str] = []
        self.pack_error: Optional[str] = None
        self.gguf_node_names: Optional[list[str]] = None
        self.timings: dict[str, float] = {}
        self.server = None
        self.executor = None
        self.runs = 0

    # --- directories ------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "temp"

    def model_dir(self, folder: str) -> Path:
        """First search path of a ComfyUI model folder (e.g. "diffusion_models", "vae")."""
        import folder_paths
        paths = [Path(p) for p in folder_paths.get_folder_paths(folder)]
        inside = [p for p in paths if self.base_dir in p.parents]
        named = [p for p in inside if p.name == folder]
        return (named or inside or paths)[0]

    def add_model_file(self, folder: str, src: Path, name: Optional[str] = None, *, link: bool = True) -> str:
        """Make ``src`` visible to ComfyUI loaders under ``folder`` and return
        the name to use in graphs (symlinked when possible, else copied)."""
        src = Path(src).resolve()
        name = name or src.name
        dst = self.model_dir(folder) / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            if dst.resolve() == src:
                self.refresh_file_lists()
                return name
            dst.unlink()
        if link:
            try:
                dst.symlink_to(src)
            except OSError:
                shutil.copyfile(src, dst)
        else:
            shutil.copyfile(src, dst)
        self.refresh_file_lists()
        return name

    def refresh_file_lists(self):
        import folder_paths
        folder_paths.filename_list_cache.clear()

    # --- pack ---------------------------------------------------------------
    def require_pack(self) -> list[str]:
        """Node names registered by the FastVMT pack; raises PackLoadError
        with the import error when the pack is missing or failed to load."""
        if not self.pack_present and (REPO_ROOT / "__init__.py").is_file():
            self._load_pack()
        if not self.pack_present:
            raise PackLoadError(f"FastVMT node pack not found: {REPO_ROOT / '__init__.py'} does not exist")
        if not self.pack_loaded:
            raise PackLoadError(f"FastVMT node pack at {REPO_ROOT} failed to load in ComfyUI "
                                f"{self.version}:\n{self.pack_error}")
        return list(self.pack_node_names)

    def _load_custom_node(self, path: Path, label: str) -> tuple[bool, list[str], str]:
        import hook_breaker_ac10a0
        import nodes
        before = set(nodes.NODE_CLASS_MAPPINGS)
        try:
            with _capture_logs() as cap:
                ok = _run_coro(nodes.load_custom_node(str(path), ignore=set(self.builtin_node_names),
                                                      module_parent="custom_nodes"))
        finally:
            # like main.py: functions saved before any node import are restored
            hook_breaker_ac10a0.restore_functions()
        added = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
        msg = cap.text()
        if ok and not added:
            log.warning("%s loaded but registered no new nodes", label)
        return bool(ok), added, msg

    def _load_pack(self):
        self.pack_present = (REPO_ROOT / "__init__.py").is_file()
        if not self.pack_present:
            return
        t0 = time.perf_counter()
        ok, added, msg = self._load_custom_node(REPO_ROOT, "FastVMT pack")
        self.timings["load_pack"] = time.perf_counter() - t0
        self.pack_loaded = ok
        self.pack_node_names = added
        self.pack_error = None if ok else (msg or "load_custom_node returned False")

    def load_gguf_pack(self) -> list[str]:
        """Load ComfyUI-GGUF (see ``find_gguf_pack``) like ComfyUI loads custom nodes, once;
        returns its node names. Raises PackLoadError when it is missing or fails."""
        if self.gguf_node_names is None:
            path = find_gguf_pack(self.comfyui_path)
            if path is None:
                raise PackLoadError(f"{GGUF_PACK_NAME} not found: set COMFYUI_GGUF_PATH or place "
                                    f"github.com/city96/{GGUF_PACK_NAME} at "
                                    f"{self.comfyui_path / 'custom_nodes' / GGUF_PACK_NAME}")
            ok, added, msg = self._load_custom_node(path, GGUF_PACK_NAME)
            if not ok or "UnetLoaderGGUF" not in added:
                raise PackLoadError(f"{GGUF_PACK_NAME} at {path} failed to load:\n{msg}")
            self.gguf_node_names = added
        return list(self.gguf_node_names)

    def object_info(self) -> dict:
        """What GET /object_info answers: ComfyUI's own route handler, called without HTTP."""
        (route,) = [r for r in self.server.routes if r.method == "GET" and r.path == "/object_info"]
        return json.loads(_run_coro(route.handler(None)).body)

    # --- validation / execution -------------------------------------------
    def _targets(self, graph: dict, outputs: Optional[Iterable]) -> Optional[list]:
        """The output nodes to execute: ``outputs``, or None for all of the graph's (ComfyUI's
        own choice in ``validate_prompt``). Only output nodes can be targets, as in ComfyUI:
        inspect a value with a FastVMTTestInspect node."""
        return None if outputs is None else [str(o) for o in outputs]

    async def _validate(self, graph: dict, targets: Optional[list], prompt_id: str) -> ValidationResult:
        import execution
        valid, error, good, node_errors = await execution.validate_prompt(prompt_id, graph, targets)
        return ValidationResult(bool(valid), error, list(good), node_errors or {})

    def validate_graph(self, graph: dict, *, outputs: Optional[Iterable] = None,
                       prompt_id: Optional[str] = None) -> ValidationResult:
        """Validate without executing; never raises for invalid graphs."""
        g = _normalise_graph(graph)
        return _run_coro(self._validate(g, self._targets(g, outputs), prompt_id or str(uuid.uuid4())))

    def interrupt_at_progress(self, monkeypatch, node: str, value: int) -> list:
        """Ask ComfyUI to stop, as the UI's stop button does, when ``node`` reports progress
        ``value``. Returns the list that collects every progress value ``node`` reports.
        ``monkeypatch`` (pytest's) undoes the hook."""
        import comfy.model_management as mm
        original, seen = self.server.send_sync, []

        def send_sync(event, data, sid=None):
            if event == "progress" and data.get("node") == node:
                seen.append(data["value"])
                if data["value"] == value:
                    mm.interrupt_current_processing(True)
            return original(event, data, sid)

        monkeypatch.setattr(self.server, "send_sync", send_sync)
        return seen

    def run_graph(self, graph: dict, *, outputs: Optional[Iterable] = None, prompt_id: Optional[str] = None,
                  keep_cache: bool = False, extra_data: Optional[dict] = None,
                  strict: bool = True, check: bool = False) -> GraphResult:
        """Validate ``graph`` with ComfyUI's ``validate_prompt`` and execute it with the
        real ``PromptExecutor``, as the server's /prompt route and prompt worker do.

        outputs:    output node ids to execute (default: all of them).
        keep_cache: keep the executor's caches from the previous run (ComfyUI's
                    normal behaviour between prompts); by default they are reset
                    so every run executes every node.
        strict:     raise GraphValidationError if *any* node has validation
                    errors (ComfyUI itself would run the valid outputs only).
        check:      raise AssertionError if execution fails.
        """
        import comfy.model_management
        import hook_breaker_ac10a0

        with _STATE.lock:
            g = _normalise_graph(graph)
            prompt_id = prompt_id or str(uuid.uuid4())
            v = _run_coro(self._validate(g, self._targets(g, outputs), prompt_id))
            msg = _format_validation(v.error, v.node_errors)
            if not v.valid or (strict and v.node_errors):
                if self.pack_error and "does not exist" in msg:
                    msg += "\nnote: the FastVMT pack failed to load:\n" + self.pack_error[-2000:]
                raise GraphValidationError("ComfyUI rejected the graph:\n" + msg, v.error, v.node_errors)
            targets, node_errors = v.outputs, v.node_errors
            g = _normalise_graph(graph)  # validation may annotate the dict

            ex = self.executor
            if not keep_cache:
                ex.reset()
            srv = self.server
            take_messages(srv)
            srv.last_prompt_id = prompt_id  # as main.py's prompt_worker does
            data = {"client_id": CLIENT_ID}
            data.update(extra_data or {})
            t0 = time.perf_counter()
            _run_coro(ex.execute_async(g, prompt_id, data, list(targets)))
            seconds = time.perf_counter() - t0
            if srv.client_id is not None:  # prompt_worker's "prompt done" message
                srv.send_sync("executing", {"node": None, "prompt_id": prompt_id}, srv.client_id)
            events = [(e, d) for (e, d, _sid) in take_messages(srv)]
            error = None
            for ev, d in ex.status_messages:
                if ev in ("execution_error", "execution_interrupted"):
                    error = d
            if error is None:
                # a node blocked execution with a message (ExecutionBlocker): ComfyUI
                # sends execution_error but still reports the prompt as successful
                error = next((d for (e, d) in events if e == "execution_error"), None)
            outputs_cache = ex.caches.outputs
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
            self.runs += 1
            hook_breaker_ac10a0.restore_functions()
            if comfy.model_management.DISABLE_SMART_MEMORY:
                comfy.model_management.unload_all_models()
            res = GraphResult(
                prompt_id=prompt_id, success=bool(ex.success) and error is None, error=error, events=events,
                status_messages=list(ex.status_messages), history=copy.copy(getattr(ex, "history_result", {}) or {}),
                targets=list(targets), node_errors=node_errors, seconds=seconds,
                _outputs=collected, _class_types=class_types)
            if check:
                res.raise_for_error()
            return res

    def reset(self, *, unload_models: bool = True):
        """Drop executor caches and (optionally) unload all models, like
        ComfyUI's "free memory" button."""
        import gc
        import comfy.model_management
        with _STATE.lock:
            self.executor.reset()
            if unload_models:
                comfy.model_management.unload_all_models()
            gc.collect()
            comfy.model_management.soft_empty_cache()

    # --- model helpers ------------------------------------------------------
    def tiny_wan(self, *, name: Optional[str] = None, **kw) -> str:
        """Write (once) a tiny Wan checkpoint into models/diffusion_models and
        return its name for UNETLoader.  Keyword args go to ``make_tiny_wan``."""
        cfg = dict(dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512, seed=0)
        cfg.update(kw)
        dtype = cfg.pop("dtype", None)
        if name is None:
            name = "fastvmt_tiny_wan_d{dim}_l{num_layers}_i{in_dim}_o{out_dim}_f{ffn_dim}_s{seed}".format(**cfg)
            if cfg.get("model_type", "t2v") != "t2v":
                name += "_" + cfg["model_type"]
            if dtype is not None:
                name += "_" + str(dtype).replace("torch.", "")
            name += ".safetensors"
        path = self.model_dir("diffusion_models") / name
        if not path.exists():
            if dtype is not None:
                cfg["dtype"] = dtype
            make_tiny_wan(path, **cfg)
            self.refresh_file_lists()
        return name

    def tiny_ltxv(self, *, num_layers: int = 1, head_dim: int = 4, seed: int = 0) -> str:
        """Write (once) a tiny random LTX-Video DiT (a non-Wan video model that
        ``UNETLoader`` detects) into models/diffusion_models; returns its name."""
        name = f"fastvmt_tiny_ltxv_l{num_layers}_h{head_dim}_s{seed}.safetensors"
        path = self.model_dir("diffusion_models") / name
        if not path.exists():
            make_tiny_ltxv(path, num_layers=num_layers, head_dim=head_dim, seed=seed)
            self.refresh_file_lists()
        return name

    def tiny_vae(self, *, seed: int = 0) -> str:
        """Cached tiny-random Wan 2.1 VAE, linked into models/vae; returns its name."""
        src = cached_tiny_wan_vae(seed=seed)
        return self.add_model_file("vae", src, f"fastvmt_tiny_wan21_vae_s{seed}.safetensors")

    def tiny_vae22(self, *, seed: int = 0) -> str:
        """Cached random-weight Wan 2.2 VAE (48 channels), linked into models/vae; returns its name."""
        src = cached_tiny_wan_vae(seed=seed, version="2.2")
        return self.add_model_file("vae", src, f"fastvmt_random_wan22_vae_s{seed}.safetensors")


def pack_module(name: str):
    """A module of the FastVMT pack as ComfyUI loaded it (``name`` like "nodes.wan.apply"):
    custom nodes are imported under their folder's path, not under a package name."""
    return sys.modules[str(REPO_ROOT).replace(".", "_x_") + "." + name]


def get_host() -> Optional[ComfyHost]:
    """The bootstrapped host, or None."""
    return _STATE.host


def bootstrap(base_dir: Optional[os.PathLike] = None, *, comfyui_path: Optional[os.PathLike] = None,
              cpu: Optional[bool] = None, load_pack: bool = True) -> ComfyHost:
    """Boot ComfyUI in this process once (idempotent) and return the host.

    * ComfyUI goes first on sys.path; ``args.cpu`` is set (unless ``cpu`` /
      ``$FASTVMT_COMFY_CPU`` says otherwise) before ``comfy.model_management``
      is imported.
    * ``folder_paths`` is pointed at ``base_dir`` (models/..., input, output,
      temp, user); default: a temporary directory removed at exit.
    * built-in nodes are initialised with ``nodes.init_extra_nodes`` (no API
      nodes, no custom_nodes scan), then ``comfy_host_nodes`` and the FastVMT
      pack (repo root, when it has an ``__init__.py``) are loaded with
      ``nodes.load_custom_node`` exactly like ComfyUI loads custom nodes.  A
      pack import failure is recorded, see ``ComfyHost.require_pack``.
    """
    with _STATE.lock:
        host = _STATE.host
        if host is not None:
            if base_dir is not None and Path(base_dir).resolve() != host.base_dir:
                raise RuntimeError(f"ComfyUI host already bootstrapped with base {host.base_dir}")
            return host

        t_start = time.perf_counter()
        if base_dir is None:
            base = Path(tempfile.mkdtemp(prefix="fastvmt-comfy-"))
            atexit.register(shutil.rmtree, base, True)
        else:
            base = Path(base_dir)
        base.mkdir(parents=True, exist_ok=True)
        base = base.resolve()
        for sub in ("models/diffusion_models", "models/vae", "models/text_encoders", "models/loras",
                    "models/checkpoints", "models/clip_vision", "input", "output", "temp", "user", "custom_nodes"):
            (base / sub).mkdir(parents=True, exist_ok=True)

        path = prepare_comfy_imports(comfyui_path, base, cpu)
        _configure_torch_threads()

        import folder_paths
        _point_folder_paths(folder_paths, base)

        import comfy.model_management  # noqa: F401  (reads args.cpu)
        import comfy.utils
        import execution
        import hook_breaker_ac10a0
        import nodes

        host = ComfyHost(path, base, bool(_STATE.cpu))
        host.timings["import"] = time.perf_counter() - t_start

        # ComfyUI's own PromptServer (never started: no port is opened). Its messages go
        # through the host loop into server.messages, where take_messages reads them.
        import server as server_module
        _STATE.loop = asyncio.new_event_loop()
        server = server_module.PromptServer(_STATE.loop)
        host.server = server

        t0 = time.perf_counter()
        if not hook_breaker_ac10a0.SAVED_FUNCTIONS:
            hook_breaker_ac10a0.save_functions()  # once, before any node module is imported
        try:
            with _capture_logs() as cap:
                _run_coro(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        finally:
            hook_breaker_ac10a0.restore_functions()
        host.timings["init_extra_nodes"] = time.perf_counter() - t0
        host.builtin_import_failures = sorted(set(re.findall(r"IMPORT FAILED: (\S+)", cap.text())))
        host.builtin_node_names = set(nodes.NODE_CLASS_MAPPINGS)

        _hijack_progress(server, path)
        host.executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_size=0)

        ok, added, msg = host._load_custom_node(TEST_NODES_DIR, "FastVMT test nodes")
        if not ok:
            raise RuntimeError(f"could not load the test node pack {TEST_NODES_DIR}:\n{msg}")
        host.test_node_names = added
        if load_pack:
            host._load_pack()
        host.timings["bootstrap"] = time.perf_counter() - t_start
        _STATE.host = host
        return host


def _configure_torch_threads():
    """Intra-op threading makes tiny-model ops *much* slower on small, shared
    CPUs (OpenMP spin-waits on descheduled threads: ~100x per op measured on a
    loaded 2-core box).  ``$FASTVMT_TORCH_THREADS`` sets the count; default: 1
    thread on machines with <= 4 CPUs unless ``$OMP_NUM_THREADS`` is set."""
    import torch
    env = os.environ.get("FASTVMT_TORCH_THREADS", "").strip()
    if env:
        n = int(env)
    elif os.environ.get("OMP_NUM_THREADS"):
        return
    elif (os.cpu_count() or 1) <= 4:
        n = 1
    else:
        return
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _point_folder_paths(folder_paths, base: Path):
    """Re-root every folder_paths location to ``base`` (also works when
    folder_paths was imported before ``args.base_directory`` was set)."""
    old_base = Path(folder_paths.base_path).resolve()
    new_models = base / "models"
    if old_base != base:
        old_models = Path(folder_paths.models_dir)
        for name, (paths, exts) in list(folder_paths.folder_names_and_paths.items()):
            new_paths = []
            for p in paths:
                pp = Path(p)
                try:
                    rel = pp.relative_to(old_models)
                    new_paths.append(str(new_models / rel))
                    continue
                except ValueError:
                    pass
                try:
                    rel = pp.relative_to(old_base)
                    new_paths.append(str(base / rel))
                except ValueError:
                    new_paths.append(p)
            folder_paths.folder_names_and_paths[name] = (new_paths, exts)
        folder_paths.base_path = str(base)
        folder_paths.models_dir = str(new_models)
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.set_user_directory(str(base / "user"))
    folder_paths.filename_list_cache.clear()


def _hijack_progress(server, comfyui_path: Path) -> None:
    """ComfyUI's own ``main.hijack_progress``: ProgressBar updates become ``progress``
    messages and honour interrupts. main.py is loaded by path (another "main" may be
    importable); loading it runs its start-up code, whose ``setup_logger`` would replace
    sys.stdout/stderr, so that is marked as done first."""
    import importlib.util
    import app.logger
    if not app.logger.logs:
        app.logger.logs = collections.deque([""], maxlen=300)
    module = sys.modules.get("comfyui_main")
    if module is None:
        spec = importlib.util.spec_from_file_location("comfyui_main", comfyui_path / "main.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["comfyui_main"] = module
        spec.loader.exec_module(module)
    module.hijack_progress(server)


# ---------------------------------------------------------------------------
# ComfyUI as a separate process (main.py): the runner, browser and thumbnail tools
# ---------------------------------------------------------------------------

PACK_DIR_NAME = "ComfyUI-FastVMT"  # the pack's folder name under custom_nodes/ in those servers


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ComfyUI main.py (CPU) at ``address`` with ``base`` as its base directory."""

    def __init__(self, base: Path, port: int, proc, log_path: Path):
        self.base, self.port, self.proc, self.log_path = base, port, proc, log_path
        self.address = f"127.0.0.1:{port}"

    def log_tail(self, n=60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def get_json(self, path):
        import urllib.request
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=30) as r:
            return json.loads(r.read())


def start_server(base: Path, comfyui: Optional[os.PathLike] = None) -> Server:
    """Start ComfyUI's main.py on a free port with ``base`` as base directory (its
    custom_nodes/ is the caller's to fill) and wait until it answers; raises RuntimeError
    with the log's tail when it exits or stays silent for 120 s."""
    import subprocess
    comfyui = comfyui or find_comfyui()
    if comfyui is None:
        raise RuntimeError("ComfyUI not found: set COMFYUI_PATH or check it out at ~/comfy/ComfyUI")
    port = free_port()
    log_path = Path(base) / "server.log"
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1" if (os.cpu_count() or 1) <= 4 else str(os.cpu_count()))
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--disable-auto-launch", "--disable-api-nodes"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Server(Path(base), port, proc, log_path)
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {proc.returncode} during start-up:\n{server.log_tail()}")
            try:
                server.get_json("/system_stats")
                return server
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ComfyUI did not answer within 120 s:\n{server.log_tail()}")
                time.sleep(0.3)
    except BaseException:
        stop_server(server)
        raise


def stop_server(server: Server):
    import subprocess
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def run_graph(graph: dict, *, prompt_id: Optional[str] = None, **kw) -> GraphResult:
    """``ComfyHost.run_graph`` on the process-wide host (bootstrapped on demand
    with a temporary base directory)."""
    return bootstrap().run_graph(graph, prompt_id=prompt_id, **kw)


def validate_graph(graph: dict, **kw) -> ValidationResult:
    return bootstrap().validate_graph(graph, **kw)


# ---------------------------------------------------------------------------
# tiny random weights
# ---------------------------------------------------------------------------

def _tensor_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode("utf-8"))) & 0x7FFF_FFFF_FFFF_FFFF


def _init_tensor(name: str, shape, seed: int):
    """Seeded, name-keyed initialisation (independent of key order):
    weights ~ N(0, 1/fan_in), small biases, unit norm scales, small modulation."""
    import torch
    g = torch.Generator().manual_seed(_tensor_seed(seed, name))
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "modulation" or name.endswith(".modulation"):
        return torch.randn(shape, generator=g) * 0.02
    if leaf == "gamma":  # RMS_norm scale in the Wan VAE
        return torch.ones(shape)
    if "norm" in name and leaf == "weight" and len(shape) == 1:
        return torch.ones(shape)
    if leaf == "bias":
        if "norm" in name:
            return torch.zeros(shape)
        return torch.randn(shape, generator=g) * 0.01
    if len(shape) >= 2:
        fan_in = 1
        for s in shape[1:]:
            fan_in *= s
        return torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
    return torch.randn(shape, generator=g) * 0.02


def _wan_meta_state_dict(dim, num_layers, in_dim, out_dim, ffn_dim, model_type="t2v"):
    import torch
    prepare_comfy_imports()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    if dim % 128 != 0:
        raise ValueError("dim must be a multiple of 128 (ComfyUI derives num_heads = dim // 128)")
    with torch.device("meta"):
        m = WanModel(model_type=model_type, patch_size=(1, 2, 2), in_dim=in_dim, dim=dim, ffn_dim=ffn_dim,
                     freq_dim=256, text_dim=4096, out_dim=out_dim, num_heads=dim // 128,
                     num_layers=num_layers, qk_norm=True, cross_attn_norm=True, eps=1e-6,
                     operations=comfy.ops.disable_weight_init)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def tiny_wan_state_dict(*, dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512, seed=0, dtype=None,
                        model_type="t2v"):
    """State dict with the exact keys/shapes of a Wan 2.1 T2V checkpoint
    (as built by ComfyUI's WanModel) filled with seeded random values.
    ``model_type="i2v"`` adds the Wan 2.1 I2V image branch (img_emb, k_img / v_img)."""
    import torch
    dtype = dtype or torch.float32
    shapes = _wan_meta_state_dict(dim, num_layers, in_dim, out_dim, ffn_dim, model_type)
    return {k: _init_tensor(k, s, seed).to(dtype).contiguous() for k, s in shapes.items()}


def make_tiny_wan(path, *, dim=256, num_layers=16, in_dim=16, out_dim=16, ffn_dim=512, seed=0, dtype=None,
                  model_type="t2v") -> Path:
    """Write a tiny random Wan 2.1 diffusion model ``.safetensors`` that ComfyUI's model
    detection recognises (num_heads = dim // 128, text_dim 4096, freq_dim 256, patch
    1x2x2, qk_norm and cross_attn_norm). Layouts: ``in_dim=out_dim=48``: Wan 2.2 TI2V 5B;
    ``in_dim=36``: Wan 2.2 14B I2V; ``in_dim=36, model_type="i2v"``: Wan 2.1 I2V."""
    import torch
    from safetensors.torch import save_file
    dtype = dtype or torch.float32
    sd = tiny_wan_state_dict(dim=dim, num_layers=num_layers, in_dim=in_dim, out_dim=out_dim,
                             ffn_dim=ffn_dim, seed=seed, dtype=dtype, model_type=model_type)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    meta = {"fastvmt_tiny": json.dumps(dict(dim=dim, num_layers=num_layers, in_dim=in_dim, out_dim=out_dim,
                                            ffn_dim=ffn_dim, seed=seed, dtype=str(dtype), model_type=model_type,
                                            version=WEIGHTS_VERSION))}
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def _ltxv_meta_shapes(num_layers, head_dim):
    import torch
    prepare_comfy_imports()
    import comfy.ops
    from comfy.ldm.lightricks.model import LTXVModel
    # model_detection reads num_layers (block count), attention_head_dim
    # (attn2.to_k rows // 32) and cross_attention_dim (attn2.to_k columns);
    # in_channels (128), 32 heads and caption_channels (4096) are defaults.
    inner = 32 * head_dim
    with torch.device("meta"):
        m = LTXVModel(in_channels=128, cross_attention_dim=inner, attention_head_dim=head_dim,
                      num_attention_heads=32, caption_channels=4096, num_layers=num_layers,
                      operations=comfy.ops.disable_weight_init)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def make_tiny_ltxv(path, *, num_layers=1, head_dim=4, seed=0, dtype=None) -> Path:
    """Write a tiny random LTX-Video DiT ``.safetensors`` (ComfyUI's
    ``LTXVModel``, 32 heads of ``head_dim``, 128 latent channels) that
    ComfyUI's model detection recognises as ``ltxv``: a video DiT that is
    *not* a Wan model (for "wrong model" tests)."""
    import torch
    from safetensors.torch import save_file
    dtype = dtype or torch.float32
    shapes = _ltxv_meta_shapes(num_layers, head_dim)
    sd = {k: _init_tensor(k, s, seed).to(dtype).contiguous() for k, s in shapes.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    meta = {"fastvmt_tiny": json.dumps(dict(kind="ltxv", num_layers=num_layers, head_dim=head_dim, seed=seed,
                                            dtype=str(dtype), version=WEIGHTS_VERSION))}
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


WAN21_VAE_CONFIG = dict(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                        temperal_downsample=[False, True, True], dropout=0.0)
# ComfyUI builds the Wan 2.2 VAE with this fixed configuration (comfy/sd.py); ~705M parameters.
WAN22_VAE_CONFIG = dict(WAN21_VAE_CONFIG, dim=160, z_dim=48)


def _wan_vae_meta_shapes(version: str = "2.1"):
    import torch
    prepare_comfy_imports()
    if version == "2.2":
        from comfy.ldm.wan.vae2_2 import WanVAE
        config = WAN22_VAE_CONFIG
    else:
        from comfy.ldm.wan.vae import WanVAE
        config = WAN21_VAE_CONFIG
    with torch.device("meta"):
        m = WanVAE(**config)
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def make_tiny_wan_vae(path, seed: int = 0, dtype=None, version: str = "2.1") -> Path:
    """Write a random-weight Wan VAE that ``comfy.sd.VAE`` detects from its keys: the
    real, fixed architecture of Wan 2.1 (dim 96, z_dim 16, ~127M params, ~250 MB in fp16)
    or Wan 2.2 (dim 160, z_dim 48, ~705M params, ~1.4 GB). Slow-ish: prefer
    ``cached_tiny_wan_vae``."""
    import torch
    from safetensors.torch import save_file
    dtype = dtype or torch.float16
    shapes = _wan_vae_meta_shapes(version)
    sd = {k: _init_tensor(k, s, seed).to(dtype).contiguous() for k, s in shapes.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    kind = "wan22_vae" if version == "2.2" else "wan21_vae"
    save_file(sd, str(tmp), metadata={"fastvmt_tiny": json.dumps({"kind": kind, "seed": seed,
                                                                  "version": WEIGHTS_VERSION})})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


def _shapes_digest(shapes: dict) -> str:
    h = hashlib.sha1()
    for k in sorted(shapes):
        h.update(f"{k}:{shapes[k]};".encode())
    return h.hexdigest()[:10]


def cached_tiny_wan_vae(seed: int = 0, directory: Optional[os.PathLike] = None, version: str = "2.1") -> Path:
    """Path of the random Wan 2.1 (or ``version="2.2"``) VAE in the persistent cache
    (built on first use; the file name encodes WEIGHTS_VERSION, the seed and a digest
    of the key/shape layout so stale files are never reused)."""
    d = Path(directory) if directory is not None else cache_dir()
    digest = _shapes_digest(_wan_vae_meta_shapes(version))
    stem = "wan22_vae" if version == "2.2" else "wan21_vae"
    path = d / f"{stem}_random_v{WEIGHTS_VERSION}_s{seed}_{digest}.safetensors"
    if path.is_file():
        return path
    d.mkdir(parents=True, exist_ok=True)
    lock = d / (path.name + ".lock")
    _with_file_lock(lock, lambda: path.is_file() or make_tiny_wan_vae(path, seed=seed, version=version))
    return path


def _with_file_lock(lock_path: Path, fn):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return fn()
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            return fn()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
