"""FastVMT for ComfyUI: training-free video motion transfer on Wan models.

ComfyUI loads this package from custom_nodes/ and calls ``comfy_entrypoint``. A
missing dependency logs one clear line instead of breaking ComfyUI's start-up; any other
import error is logged with its traceback, as the bug in the pack it is.

``WEB_DIRECTORY``: ComfyUI serves web/ at /extensions/<this folder's name>/ (nodes.py
load_custom_node reads it for V1 and V3 packs alike). The frontend loads its .js files
(web/js/fastvmt.js: the nodes' summaries shown under them after a run) and its node help
panel reads web/docs/<node id>.md.
"""

import logging
import os
import sys

WEB_DIRECTORY = "./web"

# ComfyUI imports this folder by file path, under a module name made from that path. The
# method (fastvmt_core/) has one name everywhere: the top-level ``fastvmt_core``, for the
# nodes as for the tests and benchmarks (which run from this folder), so it never loads
# twice. This is the one place that puts the folder on sys.path; appended, so it shadows
# nothing of ComfyUI's (its ``nodes`` stays ComfyUI's; ours is reached as ``.nodes``).
_ROOT = os.path.dirname(os.path.realpath(__file__))
if not any(os.path.realpath(p or os.curdir) == _ROOT for p in sys.path):
    sys.path.append(_ROOT)

# ComfyUI's own top-level modules: missing, they mean a ComfyUI too old for the pack, not a
# dependency pip can install.
_COMFYUI_MODULES = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "nodes", "server",
                    "execution", "node_helpers", "latent_preview"}


def _report_import_error(exc: ImportError) -> None:
    """One clear line for a missing dependency; anything else is a bug in the pack, logged
    with its traceback (a broken import inside the pack is no missing dependency)."""
    log = logging.getLogger("FastVMT")
    top = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    if not top or top == "fastvmt_core" or (exc.name or "").startswith(__name__ + "."):
        log.error("FastVMT nodes not loaded: an import inside the pack failed (%s: %s). This is a bug in FastVMT, "
                  "not a missing dependency; please report it with this traceback.", type(exc).__name__, exc,
                  exc_info=exc)
    elif top in _COMFYUI_MODULES:
        log.error("FastVMT nodes not loaded: this ComfyUI has no module %s; update ComfyUI.", exc.name)
    else:
        log.error("FastVMT nodes not loaded: missing dependency %s: pip install -r requirements.txt (in the "
                  "FastVMT folder, with ComfyUI's Python).", top)


try:
    from .nodes import comfy_entrypoint  # noqa: F401
except ImportError as _exc:  # keep ComfyUI starting; say what is wrong
    _report_import_error(_exc)

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
