"""ComfyUI booted in this process (``bootstrap``): built-in nodes, the stand-in test nodes and
the FastVMT pack loaded as ComfyUI loads custom nodes, main.py's progress hook, and the
``ComfyHost`` object tests use (model folders, graph runs, tiny models)."""
from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, Optional

from ._runtime import STATE, capture_logs, log, run_coro
from .graphs import (GraphResult, ValidationResult, execute_graph, normalise_graph, output_targets,
                     validate_async)
from .locate import (GGUF_PACK_NAME, REPO_ROOT, TEST_NODES_DIR, comfyui_version, configure_torch_threads,
                     find_gguf_pack, point_folder_paths, prepare_comfy_imports)
from .tiny_models import cached_tiny_wan_vae, make_tiny_ltxv, make_tiny_wan

BASE_SUBDIRS = ("models/diffusion_models", "models/vae", "models/text_encoders", "models/loras",
                "models/checkpoints", "models/clip_vision", "input", "output", "temp", "user", "custom_nodes")


class PackLoadError(RuntimeError):
    """The FastVMT node pack (repo root) is missing or failed to import."""


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
            with capture_logs() as cap:
                ok = run_coro(nodes.load_custom_node(str(path), ignore=set(self.builtin_node_names),
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
        return json.loads(run_coro(route.handler(None)).body)

    # --- validation / execution -------------------------------------------
    def validate_graph(self, graph: dict, *, outputs: Optional[Iterable] = None,
                       prompt_id: Optional[str] = None) -> ValidationResult:
        """Validate without executing; never raises for invalid graphs."""
        g = normalise_graph(graph)
        return run_coro(validate_async(g, output_targets(outputs), prompt_id or str(uuid.uuid4())))

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
        return execute_graph(self, graph, outputs=outputs, prompt_id=prompt_id, keep_cache=keep_cache,
                             extra_data=extra_data, strict=strict, check=check)

    def reset(self, *, unload_models: bool = True):
        """Drop executor caches and (optionally) unload all models, like
        ComfyUI's "free memory" button."""
        import gc
        import comfy.model_management
        with STATE.lock:
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
    return STATE.host


# ---------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------

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


def _make_base_dir(base_dir: Optional[os.PathLike]) -> Path:
    """The base directory ComfyUI writes to (default: a temporary one removed at exit),
    with the model, input, output, temp and user folders made."""
    if base_dir is None:
        base = Path(tempfile.mkdtemp(prefix="fastvmt-comfy-"))
        atexit.register(shutil.rmtree, base, True)
    else:
        base = Path(base_dir)
    base.mkdir(parents=True, exist_ok=True)
    base = base.resolve()
    for sub in BASE_SUBDIRS:
        (base / sub).mkdir(parents=True, exist_ok=True)
    return base


def _init_builtin_nodes(host: ComfyHost) -> None:
    """ComfyUI's built-in and extra nodes (no API nodes, no custom_nodes scan)."""
    import hook_breaker_ac10a0
    import nodes
    t0 = time.perf_counter()
    if not hook_breaker_ac10a0.SAVED_FUNCTIONS:
        hook_breaker_ac10a0.save_functions()  # once, before any node module is imported
    try:
        with capture_logs() as cap:
            run_coro(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    finally:
        hook_breaker_ac10a0.restore_functions()
    host.timings["init_extra_nodes"] = time.perf_counter() - t0
    host.builtin_import_failures = sorted(set(re.findall(r"IMPORT FAILED: (\S+)", cap.text())))
    host.builtin_node_names = set(nodes.NODE_CLASS_MAPPINGS)


def bootstrap(base_dir: Optional[os.PathLike] = None, *, comfyui_path: Optional[os.PathLike] = None,
              cpu: Optional[bool] = None, load_pack: bool = True) -> ComfyHost:
    """Boot ComfyUI in this process once (idempotent) and return the host.

    * ComfyUI goes first on sys.path; ``args.cpu`` is set (unless ``cpu`` /
      ``$FASTVMT_COMFY_CPU`` says otherwise) before ``comfy.model_management``
      is imported.
    * ``folder_paths`` is pointed at ``base_dir`` (models/..., input, output,
      temp, user); default: a temporary directory removed at exit.
    * built-in nodes are initialised with ``nodes.init_extra_nodes`` (no API
      nodes, no custom_nodes scan), then the stand-in test nodes
      (``comfy_host/stand_in_nodes``) and the FastVMT pack (repo root, when it has
      an ``__init__.py``) are loaded with ``nodes.load_custom_node`` exactly like
      ComfyUI loads custom nodes.  A pack import failure is recorded, see
      ``ComfyHost.require_pack``.
    """
    with STATE.lock:
        host = STATE.host
        if host is not None:
            if base_dir is not None and Path(base_dir).resolve() != host.base_dir:
                raise RuntimeError(f"ComfyUI host already bootstrapped with base {host.base_dir}")
            return host

        t_start = time.perf_counter()
        base = _make_base_dir(base_dir)
        path = prepare_comfy_imports(comfyui_path, base, cpu)
        configure_torch_threads()

        import folder_paths
        point_folder_paths(folder_paths, base)

        import comfy.model_management  # noqa: F401  (reads args.cpu)
        import comfy.utils  # noqa: F401
        import execution
        import hook_breaker_ac10a0  # noqa: F401
        import nodes  # noqa: F401

        host = ComfyHost(path, base, bool(STATE.cpu))
        host.timings["import"] = time.perf_counter() - t_start

        # ComfyUI's own PromptServer (never started: no port is opened). Its messages go
        # through the host loop into server.messages, where take_messages reads them.
        import server as server_module
        STATE.loop = asyncio.new_event_loop()
        host.server = server_module.PromptServer(STATE.loop)

        _init_builtin_nodes(host)
        _hijack_progress(host.server, path)
        host.executor = execution.PromptExecutor(host.server, cache_type=execution.CacheType.CLASSIC,
                                                 cache_size=0)

        ok, added, msg = host._load_custom_node(TEST_NODES_DIR, "FastVMT test nodes")
        if not ok:
            raise RuntimeError(f"could not load the test node pack {TEST_NODES_DIR}:\n{msg}")
        host.test_node_names = added
        if load_pack:
            host._load_pack()
        host.timings["bootstrap"] = time.perf_counter() - t_start
        STATE.host = host
        return host


# The process-wide host's shortcuts live here, next to bootstrap: graphs.py (which host.py
# imports) cannot reach bootstrap without an import cycle.
def run_graph(graph: dict, *, prompt_id: Optional[str] = None, **kw) -> GraphResult:
    """``ComfyHost.run_graph`` on the process-wide host (bootstrapped on demand
    with a temporary base directory)."""
    return bootstrap().run_graph(graph, prompt_id=prompt_id, **kw)


def validate_graph(graph: dict, **kw) -> ValidationResult:
    return bootstrap().validate_graph(graph, **kw)
