"""ComfyUI nodes of the FastVMT pack (V3 schema)."""

from comfy_api.latest import ComfyExtension

from .fastvmt_nodes import NODE_LIST


class FastVMTExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODE_LIST)


async def comfy_entrypoint() -> FastVMTExtension:
    return FastVMTExtension()
