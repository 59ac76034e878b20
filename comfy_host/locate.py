"""Finding ComfyUI (and the ComfyUI-GGUF pack) and preparing ComfyUI's import environment:
sys.path, ``comfy.cli_args.args`` (CPU mode, base directory), folder_paths, torch threads."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Optional

from ._runtime import STATE, log

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_NODES_DIR = Path(__file__).resolve().parent / "stand_in_nodes"  # test-only conditioning, latents, ...
GGUF_PACK_NAME = "ComfyUI-GGUF"

# Top-level names ComfyUI relies on; they must not already be taken by other modules
# (e.g. a pack's own nodes.py imported as "nodes").
COMFY_TOP_LEVEL = ("comfy", "nodes", "execution", "folder_paths", "server", "comfy_execution",
                   "comfy_extras", "comfy_api", "node_helpers", "latent_preview")


class ComfyUINotFound(RuntimeError):
    """No usable ComfyUI checkout was found."""


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


def _resolve_comfyui(comfyui_path: Optional[Path]) -> Path:
    path = Path(comfyui_path).resolve() if comfyui_path else find_comfyui()
    if path is None or not _is_comfyui(path):
        raise ComfyUINotFound(
            "ComfyUI not found: set COMFYUI_PATH or check out ComfyUI at ~/comfy/ComfyUI "
            "(or place this repo at ComfyUI/custom_nodes/<pack>)")
    return path


def _put_comfyui_first(path: Path) -> None:
    """ComfyUI's top-level modules (nodes, server, utils, ...) are imported by name, as
    main.py does with its own folder first on sys.path."""
    p = str(path)
    while p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)
    for name in COMFY_TOP_LEVEL:
        mod = sys.modules.get(name)
        if mod is not None and not _module_is_under(mod, path):
            raise RuntimeError(f"module {name!r} is already imported from {_module_location(mod)}, "
                               f"not from ComfyUI at {path}; it shadows ComfyUI's module")


def _set_cpu_mode(args, cpu: bool) -> None:
    if "comfy.model_management" not in sys.modules:
        if cpu:
            args.cpu = True
    elif cpu:
        import comfy.model_management as mm
        if mm.cpu_state != mm.CPUState.CPU:
            log.warning("comfy.model_management was imported before the test host; CPU mode not forced")


def _import_comfy_utils(path: Path) -> None:
    """main.py imports ComfyUI's ``utils`` package before ``nodes`` (which puts
    ComfyUI/comfy first on sys.path, where comfy/utils.py would shadow it;
    server.py -> app.frontend_management then fails on utils.install_util)."""
    u = sys.modules.get("utils")
    if u is None:
        try:
            import utils.extra_config  # noqa: F401
        except Exception as e:  # noqa: BLE001
            log.warning("could not import ComfyUI's utils package: %s", e)
    elif not _module_is_under(u, path):
        log.warning("a foreign 'utils' module is imported (%s); ComfyUI's server import may fail",
                    _module_location(u))


def prepare_comfy_imports(comfyui_path: Optional[Path] = None, base_dir: Optional[Path] = None,
                          cpu: Optional[bool] = None) -> Path:
    """Put ComfyUI first on sys.path and configure ``comfy.cli_args.args``
    (CPU mode, base directory) before anything reads them.  Idempotent."""
    with STATE.lock:
        prepared = getattr(STATE, "prepared", None)
        if prepared is not None:
            if comfyui_path is not None and Path(comfyui_path).resolve() != prepared:
                raise RuntimeError(f"ComfyUI already prepared from {prepared}, cannot switch to {comfyui_path}")
            return prepared
        path = _resolve_comfyui(comfyui_path)
        _put_comfyui_first(path)
        if cpu is None:
            cpu = _env_flag("FASTVMT_COMFY_CPU", True)

        # comfy.cli_args parses [] unless comfy.options.enable_args_parsing()
        # was called (main.py does that), so pytest's argv is never read.
        import comfy.options  # noqa: F401
        from comfy.cli_args import args

        _set_cpu_mode(args, cpu)
        _import_comfy_utils(path)
        if base_dir is not None and "folder_paths" not in sys.modules:
            args.base_directory = str(base_dir)
        args.disable_api_nodes = True
        args.disable_all_custom_nodes = True
        args.database_url = "sqlite:///:memory:"
        args.disable_auto_launch = True
        args.auto_launch = False
        STATE.prepared = path
        STATE.cpu = bool(cpu)
        return path


def configure_torch_threads():
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


def _rebased(p: str, old_base: Path, old_models: Path, base: Path) -> str:
    pp = Path(p)
    for old, new in ((old_models, base / "models"), (old_base, base)):
        try:
            return str(new / pp.relative_to(old))
        except ValueError:
            pass
    return p


def point_folder_paths(folder_paths, base: Path):
    """Re-root every folder_paths location to ``base`` (also works when
    folder_paths was imported before ``args.base_directory`` was set)."""
    old_base = Path(folder_paths.base_path).resolve()
    if old_base != base:
        old_models = Path(folder_paths.models_dir)
        for name, (paths, exts) in list(folder_paths.folder_names_and_paths.items()):
            folder_paths.folder_names_and_paths[name] = (
                [_rebased(p, old_base, old_models, base) for p in paths], exts)
        folder_paths.base_path = str(base)
        folder_paths.models_dir = str(base / "models")
    folder_paths.set_output_directory(str(base / "output"))
    folder_paths.set_input_directory(str(base / "input"))
    folder_paths.set_temp_directory(str(base / "temp"))
    folder_paths.set_user_directory(str(base / "user"))
    folder_paths.filename_list_cache.clear()
