"""The shipped API workflows (example_workflows/api/) on tiny stand-in models, for host tests
that run them as they are in the in-process executor.

No stand-in can exist for the UMT5-XXL text encoder (its configuration is fixed at about
5.7B parameters), so ``CLIPTextEncode`` becomes the test node ``FastVMTTestConditioning``
(seeded random conditioning, same ``text`` input) and ``CLIPLoader`` is dropped, as the
headless-runner tests do. Everything else, file names included, stays as shipped."""
from __future__ import annotations

import json

from comfy_host import stand_in_text_encoders
from tests.helpers.workflows import WORKFLOW_DIR


def tiny_api(name: str, *, unet: str, vae: str, width: int = 64, height: int = 48, length: int = 9,
             steps: int = 4) -> dict:
    """The shipped API workflow ``name`` with the tiny models' names in its loaders, the
    stand-in text encoder, and a small size and step count on every node that has them."""
    prompt = stand_in_text_encoders(json.loads((WORKFLOW_DIR / "api" / f"{name}.api.json").read_text("utf-8")))
    small = {"width": width, "height": height, "length": length, "steps": steps}
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "UNETLoader":
            inputs["unet_name"] = unet
        elif node["class_type"] == "VAELoader":
            inputs["vae_name"] = vae
        inputs.update({key: value for key, value in small.items() if key in inputs})
    return prompt


def node_ids(prompt: dict, class_type: str) -> list[str]:
    return sorted((nid for nid, node in prompt.items() if node["class_type"] == class_type), key=int)
