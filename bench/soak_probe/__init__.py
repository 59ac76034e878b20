"""A custom node folder for the soak's servers only (``python -m bench.soak`` links it into
their custom_nodes/): no nodes, one route, ``GET /fastvmt_soak/state``, which answers what
FastVMT left behind on the live models after the last run and the server's RSS."""
from __future__ import annotations

import gc
import os

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


def _is_ours(obj) -> bool:
    fn = getattr(obj, "func", obj)   # functools.partial
    return "fastvmt" in (getattr(fn, "__module__", "") or "").lower() or "FastVMT" in type(fn).__module__


def run_scoped_leftovers(patcher) -> list[str]:
    """What a FastVMT run installs only for itself, found on ``patcher``: pass wrappers,
    block patches, an attention override, transformer_options keys, forward overrides."""
    found = []
    options = patcher.model_options.get("transformer_options", {})
    for kind, by_key in options.get("wrappers", {}).items():
        if kind != "sampler_sample":   # Apply FastVMT Motion's output model keeps that one
            found += [f"wrapper {kind}/{k}" for k in by_key if "fastvmt" in k.lower()]
    for kind, by_key in getattr(patcher, "wrappers", {}).items():
        if kind != "sampler_sample":
            found += [f"patcher wrapper {kind}/{k}" for k in by_key if "fastvmt" in k.lower()]
    for name, by_block in options.get("patches_replace", {}).items():
        found += [f"patch {name}/{b}" for b, fn in by_block.items() if _is_ours(fn)]
    override = options.get("optimized_attention_override")
    if override is not None and _is_ours(override):
        found.append("attention override")
    found += [f"transformer_options[{k!r}]" for k in options if "fastvmt" in str(k).lower()]
    model = getattr(getattr(patcher, "model", None), "diffusion_model", None)
    if model is not None:
        found += [f"forward of {name}" for name, m in model.named_modules() if "forward" in m.__dict__]
    return found


def state() -> dict:
    import comfy.model_management as mm
    import comfy.model_patcher
    gc.collect()
    patchers = [o for o in gc.get_objects() if isinstance(o, comfy.model_patcher.ModelPatcher)]
    loaded = [lm.model for lm in mm.current_loaded_models if lm.model is not None]
    guided_clones = [p for p in patchers
                     if any("fastvmt" in k for k in getattr(p, "wrappers", {}).get("sampler_sample", {}))]
    leftovers = {f"patcher {i}": found for i, p in enumerate(patchers) if (found := run_scoped_leftovers(p))}
    with open(f"/proc/{os.getpid()}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return {"rss_mb": rss_kb / 1024, "live_patchers": len(patchers), "loaded_models": len(loaded),
            "guided_clones_alive": len(guided_clones), "leftovers": leftovers,
            "leftover_count": sum(len(v) for v in leftovers.values())}


def _register() -> None:
    from aiohttp import web
    from server import PromptServer

    @PromptServer.instance.routes.get("/fastvmt_soak/state")
    async def soak_state(request):
        return web.json_response(state())


_register()
