"""The soak's world: two ComfyUI servers on loopback (CPU, tiny random-weight Wan models
under the shipped workflows' file names, the pack and the soak probe in custom_nodes/),
their input files, the two workflows with a stand-in text encoder, and the job file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import comfy_host

REPO = comfy_host.REPO_ROOT
API_DIR = REPO / "example_workflows" / "api"
PROBE_DIR = Path(__file__).resolve().parent / "soak_probe"
WORKFLOWS = {"t2v": "fastvmt_wan21_t2v_motion_transfer", "i2v": "fastvmt_wan22_ti2v_5b"}
# 16 blocks, as the workflows' motion_block 14 needs; small width and ffn for a 2-core CPU
TINY_DIT = dict(dim=128, num_layers=16, ffn_dim=256)
SIZE = dict(width=64, height=48, frames=9, steps=4)


def write_models(models: Path) -> None:
    """The shipped workflows' model files, as tiny stand-ins (written once)."""
    dit = models / "diffusion_models"
    if not (dit / "wan2.1_t2v_1.3B_fp16.safetensors").is_file():
        comfy_host.make_tiny_wan(dit / "wan2.1_t2v_1.3B_fp16.safetensors", in_dim=16, out_dim=16, **TINY_DIT)
        comfy_host.make_tiny_wan(dit / "wan2.2_ti2v_5B_fp16.safetensors", in_dim=48, out_dim=48, **TINY_DIT)
    (models / "vae").mkdir(parents=True, exist_ok=True)
    for name, version in (("wan_2.1_vae.safetensors", "2.1"), ("wan2.2_vae.safetensors", "2.2")):
        if not (models / "vae" / name).exists():
            (models / "vae" / name).symlink_to(comfy_host.cached_tiny_wan_vae(version=version))


def server_base(root: Path, name: str, models: Path) -> Path:
    """A server's base directory: the pack, the test nodes and the probe; shared models."""
    base = root / name
    nodes = base / "custom_nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    for link, target in ((comfy_host.PACK_DIR_NAME, REPO), ("fastvmt_test_nodes", comfy_host.TEST_NODES_DIR),
                         ("fastvmt_soak_probe", PROBE_DIR)):
        if not (nodes / link).exists():
            (nodes / link).symlink_to(target, target_is_directory=True)
    if not (base / "models").exists():
        (base / "models").symlink_to(models, target_is_directory=True)
    return base


def write_clip(path: Path, frames: int = 33, width: int = 96, height: int = 64) -> Path:
    """A reference with known motion: a bright disc moving right and down over a gradient."""
    import av
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = np.stack([xs * 255 // width, ys * 255 // height, np.full_like(xs, 64)], -1).astype(np.uint8)
            img[(xs - 10 - 2 * t) ** 2 + (ys - 10 - t) ** 2 < 64] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_image(path: Path, width: int = 64, height: int = 48) -> Path:
    from PIL import Image
    ys, xs = np.mgrid[0:height, 0:width]
    img = np.stack([xs * 255 // width, 255 - ys * 255 // height, np.full_like(xs, 128)], -1).astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def write_workflows(root: Path) -> dict:
    """kind -> the shipped API workflow with the stand-in text encoder, as a file, plus a
    Save Latent of the sampled latent: ComfyUI's mp4 encoding of identical frames is not
    bit-reproducible here, so runs are compared by their latents."""
    out = {}
    for kind, name in WORKFLOWS.items():
        prompt = comfy_host.stand_in_text_encoders(json.loads((API_DIR / f"{name}.api.json").read_text("utf-8")))
        sampler = next(nid for nid, n in prompt.items() if n["class_type"] == "FastVMTGuidanceSampler")
        prompt["900"] = {"class_type": "SaveLatent", "_meta": {"title": "Save Latent (soak)"},
                         "inputs": {"samples": [sampler, 0], "filename_prefix": "fastvmt_soak/latent"}}
        out[kind] = root / f"{name}.api.json"
        out[kind].write_text(json.dumps(prompt), encoding="utf-8")
    return out


def job_lines(runs: int, workflows: dict, clip: Path, image: Path) -> list[dict]:
    """``runs`` jobs: text-to-video and image-to-video in runs of 1-3, so that each server
    keeps switching models, with their own seeds and prompts."""
    pattern = ["t2v", "t2v", "i2v", "t2v", "i2v", "i2v", "t2v", "i2v", "t2v", "t2v", "t2v", "i2v"]
    jobs = []
    for i in range(runs):
        kind = pattern[i % len(pattern)]
        job = {"workflow": str(workflows[kind]), "video": str(clip), "seed": 100 + i, **SIZE,
               "prompt": f"soak run {i}: a {('red fox', 'blue car', 'small robot')[i % 3]} moving"}
        if kind == "i2v":
            job["image"] = str(image)
        jobs.append(job)
    return jobs


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    return path
