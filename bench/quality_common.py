"""What the quality levels share (``bench.quality``'s levels 1 and 2, ``bench.quality_v3``'s
level 3, and the benchmarks built on them): the Step-Skip Settings rows, latents in and
out of ComfyUI's input folder, the level-2 graph, the committed shapes model and the frame
strip picture. Here, level 3 needs nothing from ``bench.quality`` (which runs it for
``--level 3``): the two modules import no cycle."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from bench import shapes
from bench.sampling import settings_inputs

REPO = Path(__file__).resolve().parent.parent

SHAPES_MODEL = REPO / "bench" / "models" / "tiny_wan_shapes.safetensors"


CONFIGS = {  # name -> Step-Skip Settings overrides
    "no transfer": {"mode": "No_transfer"},
    "FastVMT": {},
    "no skip": {"interval": 1},
    "full AMF": {"mode": "AMF", "exit_block": 999},
}


# --------------------------------------------------------------------------- host glue

def _latent_format():
    import comfy.latent_formats
    return comfy.latent_formats.Wan21()


def put_latent(x_model: torch.Tensor, name: str) -> str:
    """Write a model-space latent ``[1, 16, F, H, W]`` as a ``.latent`` file in ComfyUI's input
    folder (in LATENT space, as the stock LoadLatent returns it unscaled); returns its name."""
    import folder_paths
    from safetensors.torch import save_file
    lat = _latent_format().process_out(x_model.float())
    path = Path(folder_paths.get_input_directory()) / f"{name}.latent"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latent_tensor": lat.contiguous(), "latent_format_version_0": torch.tensor([])}, str(path))
    return path.name


def model_space(latent: dict) -> torch.Tensor:
    return _latent_format().process_in(latent["samples"].float().cpu())


def conditioning_node(text: str, scale: float = 1.0) -> dict:
    """The test nodes' stand-in for a text encoder (seeded conditioning, keyed by ``text``)."""
    return {"class_type": "FastVMTTestConditioning",
            "inputs": {"seed": 0, "tokens": shapes.PROMPT_TOKENS, "text": text, "scale": scale}}


def motion_node(ref: str, frames: int, lat_h: int, lat_w: int, block: int, span: int, window: int,
                tile: tuple) -> dict:
    """Extract Motion of the latent node ``ref`` with the graph's "model" node."""
    return {"class_type": "FastVMTExtractMotion",
            "inputs": {"model": ["model", 0], "latent": [ref, 0], "width": lat_w * 8, "height": lat_h * 8,
                       "length": (frames - 1) * 4 + 1, "motion_block": block, "temporal_span": span,
                       "window": window, "tile_rows": tile[0], "tile_cols": tile[1], "tau": 1.0}}


# --------------------------------------------------------------------------- level 2's graph and model

def level2_graph(model: str, ref: str, prompt: str, *, spec: shapes.ClipSpec, seed: int, overrides: dict,
                 block: int, steps: int, cfg: float, window: int = 5, span: int = 3, denoise: float = 1.0) -> dict:
    """denoise 1: text-to-video from an empty latent. Below 1: start from the noised
    reference latent (the released code's example uses 0.75)."""
    return {
        "model": {"class_type": "UNETLoader", "inputs": {"unet_name": model, "weight_dtype": "default"}},
        "ref": {"class_type": "LoadLatent", "inputs": {"latent": ref}},
        "pos": conditioning_node(prompt),
        "neg": conditioning_node("", 0.0),
        "motion": motion_node("ref", spec.frames, spec.size, spec.size, block, span=span, window=window,
                               tile=(2, 2)),
        "settings": {"class_type": "FastVMTStepSkipSettings", "inputs": settings_inputs(**overrides)},
        "empty": {"class_type": "EmptyHunyuanLatentVideo",
                  "inputs": {"width": spec.size * 8, "height": spec.size * 8, "length": (spec.frames - 1) * 4 + 1,
                             "batch_size": 1}},
        "sample": {"class_type": "FastVMTGuidanceSampler", "inputs": {
            "model": ["model", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler",
            "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
            "latent_image": ["empty", 0] if denoise >= 1.0 else ["ref", 0],
            "denoise": denoise, "motion": ["motion", 0], "settings": ["settings", 0]}},
        "out": {"class_type": "FastVMTTestInspect", "inputs": {"value": ["sample", 0]}},
    }


def install_shapes_model(host, path: Path = SHAPES_MODEL) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: train it once with `python -m bench.train_shapes`")
    dst = host.model_dir("diffusion_models") / path.name
    if not dst.exists():
        shutil.copyfile(path, dst)
    return dst.name


# --------------------------------------------------------------------------- picture

def write_strip(path: Path, examples: list, scale: int = 4) -> Path:
    """A frame strip PNG: for each example, one row per clip (label, then the frames left to
    right). ``examples``: lists of (label, intensity [F, H, W]) pairs."""
    import cv2
    label_w, gap = 190, 6
    blocks = []
    for rows in examples:
        for label, clip in rows:
            frames = [np.kron(f.numpy(), np.ones((scale, scale))) for f in clip]
            strip = np.concatenate([np.pad(f, ((1, 1), (1, 1)), constant_values=0.35) for f in frames], axis=1)
            tag = np.zeros((strip.shape[0], label_w), np.uint8)
            for i, line in enumerate(label.split("\n")):
                cv2.putText(tag, line, (6, 22 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
            blocks.append(np.concatenate([tag / 255.0, strip], axis=1))
        blocks.append(np.full((gap, blocks[-1].shape[1]), 0.6))
    img = (np.concatenate(blocks[:-1], axis=0).clip(0, 1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path
