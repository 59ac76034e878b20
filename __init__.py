"""FastVMT for ComfyUI: training-free video motion transfer on Wan models.

ComfyUI loads this package from custom_nodes/ and calls ``comfy_entrypoint``. A
missing dependency logs one clear line instead of breaking ComfyUI's start-up.

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

try:
    from .nodes import comfy_entrypoint  # noqa: F401
except ImportError as exc:  # keep ComfyUI starting; say what to install
    logging.getLogger("FastVMT").error(
        "FastVMT nodes not loaded: %s. Run 'pip install -r requirements.txt' in the FastVMT folder "
        "with ComfyUI's Python.", exc)

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
