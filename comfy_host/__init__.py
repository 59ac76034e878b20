"""In-process ComfyUI host for FastVMT tests and benchmarks (both import this package).

Runs API-format prompt graphs through ComfyUI's own machinery inside the test process:
``execution.validate_prompt`` (as the /prompt route), ``execution.PromptExecutor`` (as
the prompt worker), ComfyUI's ``server.PromptServer`` object (its messages are read from
its queue; no port is opened) and ``main.hijack_progress`` for progress messages. Graphs
must have output nodes, as in ComfyUI (``FastVMTTestInspect`` returns any value to the
test); build them with ``comfy_execution.graph_utils.GraphBuilder``.  Models are tiny
random-weight Wan checkpoints written with the exact key names / shapes of the real ones,
so ComfyUI's own loaders (``UNETLoader``, ``VAELoader``, ``comfy.sd.*``) detect and load them.

One module per job:
    locate        finding ComfyUI / ComfyUI-GGUF, versions, the cache directory, import set-up
    graphs        GraphResult, validation, running a graph on the executor
    host          ComfyHost, bootstrap (built-in, stand-in and FastVMT nodes), progress hook,
                  run_graph / validate_graph on the process-wide host
    server        ComfyUI's main.py as a separate process (runner, browser, thumbnails)
    tiny_models   tiny random Wan / LTX-Video / Wan VAE checkpoints
    stand_in_nodes  test-only ComfyUI nodes (text-encoder stand-in, latents, inspect, ...),
                  loaded by ComfyUI's load_custom_node like any custom node

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

import sys

from ._runtime import log, take_messages
from .graphs import CLIENT_ID, GraphResult, GraphValidationError, ValidationResult
from .host import ComfyHost, PackLoadError, bootstrap, get_host, pack_module, run_graph, validate_graph
from .locate import (GGUF_PACK_NAME, REPO_ROOT, TEST_NODES_DIR, ComfyUINotFound, cache_dir, comfyui_version,
                     find_comfyui, find_gguf_pack, prepare_comfy_imports)
from .server import PACK_DIR_NAME, Server, free_port, stand_in_text_encoders, start_server, stop_server
from .tiny_models import (WAN21_VAE_CONFIG, WAN22_VAE_CONFIG, WEIGHTS_VERSION, cached_tiny_wan_vae, init_tensor,
                          make_tiny_ltxv, make_tiny_wan, make_tiny_wan_vae, tiny_wan_state_dict)

__all__ = [
    # locate
    "REPO_ROOT", "TEST_NODES_DIR", "GGUF_PACK_NAME", "ComfyUINotFound", "find_comfyui", "find_gguf_pack",
    "comfyui_version", "cache_dir", "prepare_comfy_imports",
    # graphs
    "CLIENT_ID", "GraphValidationError", "GraphResult", "ValidationResult", "run_graph", "validate_graph",
    # host
    "ComfyHost", "PackLoadError", "bootstrap", "get_host", "pack_module", "take_messages", "log",
    # server
    "PACK_DIR_NAME", "Server", "free_port", "stand_in_text_encoders", "start_server", "stop_server",
    # tiny models
    "WEIGHTS_VERSION", "WAN21_VAE_CONFIG", "WAN22_VAE_CONFIG", "make_tiny_wan", "make_tiny_ltxv",
    "make_tiny_wan_vae", "cached_tiny_wan_vae", "tiny_wan_state_dict",
    "init_tensor",   # the weight initialisation, which tests compare against
]

# Imported a second time under another name (e.g. ``<repo>.comfy_host`` when pytest treats
# the repo root as a package), the canonical name resolves to the first copy; the
# process-wide state is shared either way (see _runtime).
if __name__ != "comfy_host":
    sys.modules.setdefault("comfy_host", sys.modules[__name__])
