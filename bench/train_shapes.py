"""Train the tiny Wan-architecture "moving shapes" model used by the level-2 quality
benchmark (``python -m bench.quality --level 2``). Run once, by hand; never in CI:

    python -m bench.train_shapes [--steps 3000] [--out bench/models/tiny_wan_shapes.safetensors]

The model is ComfyUI's own ``comfy.ldm.wan.model.WanModel`` (the class UNETLoader
builds for a Wan 2.1 checkpoint) at toy size, trained with rectified-flow matching the
way ComfyUI samples Wan (x_t = (1 - s) x0 + s e, the model predicts e - x0 at timestep
1000 s) on clips from ``bench.shapes``: one shape moving along a random smooth path,
conditioned on the shape's class through a fixed random 4096-d "prompt"
(``bench.shapes.class_context``). One in ten samples gets an all-zero prompt so the
model also learns the unconditional prediction that classifier-free guidance needs.

The checkpoint keeps ComfyUI's key names, so UNETLoader detects it as Wan 2.1 T2V; its
training settings are stored in the file's metadata and in a JSON file beside it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench import shapes

REPO = Path(__file__).resolve().parent.parent

DEFAULT_OUT = REPO / "bench" / "models" / "tiny_wan_shapes.safetensors"


@dataclass
class TrainSettings:
    steps: int = 3000
    batch: int = 12
    lr: float = 1e-3
    lr_final: float = 1e-4
    warmup: int = 100
    weight_decay: float = 0.01
    ema: float = 0.998
    null_prompt_p: float = 0.1
    sigma_shift: float = 8.0      # half of the batch draws sigmas like Wan sampling (shift 8), half uniform
    dim: int = 128
    ffn_dim: int = 512
    num_layers: int = 6
    frames: int = 8
    size: int = 16
    seed: int = 0
    threads: int = 1


def build_model(s: TrainSettings):
    import comfy_host
    comfy_host.prepare_comfy_imports()
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    model = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=s.dim, ffn_dim=s.ffn_dim, freq_dim=256,
                     text_dim=4096, out_dim=16, num_heads=s.dim // 128, num_layers=s.num_layers, qk_norm=True,
                     cross_attn_norm=True, eps=1e-6, operations=comfy.ops.disable_weight_init)
    # disable_weight_init leaves weights uninitialised: start from the harness's seeded init.
    sd = comfy_host.tiny_wan_state_dict(dim=s.dim, num_layers=s.num_layers, ffn_dim=s.ffn_dim, seed=s.seed)
    model.load_state_dict(sd, strict=True)
    return model.float()


def sample_sigmas(gen, n: int, shift: float) -> torch.Tensor:
    u = torch.rand(n, generator=gen).clamp(1e-3, 1 - 1e-3)
    shifted = shift * u / (1 + (shift - 1) * u)
    use_shift = torch.rand(n, generator=gen) < 0.5
    return torch.where(use_shift, shifted, u)


def batch(gen, s: TrainSettings, contexts: torch.Tensor):
    spec = shapes.ClipSpec(frames=s.frames, size=s.size)
    cls = torch.randint(0, len(shapes.CLASSES), (s.batch,), generator=gen)
    paths, radii = shapes.random_paths(gen, s.batch, spec)
    x0 = shapes.encode(shapes.render(cls, paths, radii, s.size))
    ctx = contexts[cls]
    drop = torch.rand(s.batch, generator=gen) < s.null_prompt_p
    ctx = torch.where(drop[:, None, None], torch.zeros_like(ctx), ctx)
    return x0, ctx


def train(s: TrainSettings, out: Path, log_every: int = 50, save_every: int = 0) -> dict:
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    model = build_model(s).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    contexts = torch.cat([shapes.class_context(i) for i in range(len(shapes.CLASSES))])  # [K, T, 4096]
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.99))

    def lr_at(step):
        if step < s.warmup:
            return s.lr * (step + 1) / s.warmup
        p = (step - s.warmup) / max(1, s.steps - s.warmup)
        return s.lr_final + 0.5 * (s.lr - s.lr_final) * (1 + math.cos(math.pi * p))

    history, t0, running = [], time.time(), None
    for step in range(s.steps):
        x0, ctx = batch(gen, s, contexts)
        sigma = sample_sigmas(gen, s.batch, s.sigma_shift)
        noise = torch.randn(x0.shape, generator=gen)
        sg = sigma[:, None, None, None, None]
        xt = (1 - sg) * x0 + sg * noise
        pred = model(xt, sigma * 1000, ctx)
        loss = torch.nn.functional.mse_loss(pred, noise - x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(s.ema, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % log_every == 0 or step == s.steps - 1:
            history.append({"step": step + 1, "loss": round(running, 5), "seconds": round(time.time() - t0, 1)})
            print(f"step {step + 1}/{s.steps}  loss {running:.4f}  {time.time() - t0:.0f}s", flush=True)
        if save_every and (step + 1) % save_every == 0 and step + 1 < s.steps:
            save(ema, out.with_name(f"{out.stem}.step{step + 1}{out.suffix}"), {"settings": asdict(s), "step": step + 1})

    meta = {"settings": asdict(s), "classes": list(shapes.CLASSES), "codec": "bench.shapes (sign-weighted 16 "
            "channels, model space)", "prompt": "FastVMTTestConditioning(seed=0, tokens=8, text=<class>)",
            "final_loss": history[-1]["loss"], "train_seconds": round(time.time() - t0, 1),
            "torch": torch.__version__, "history": history}
    save(ema, out, meta)
    return meta



def save(model, out: Path, meta: dict) -> None:
    from safetensors.torch import save_file
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_name(out.name + ".tmp")
    save_file(sd, str(tmp), metadata={"fastvmt_shapes": json.dumps({k: v for k, v in meta.items() if k != "history"})})
    os.replace(tmp, out)
    if "history" in meta:
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainSettings()
    for name, value in asdict(defaults).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--save-every", type=int, default=500, help="also write intermediate checkpoints (0: never)")
    args = vars(p.parse_args(argv))
    out, save_every = args.pop("out"), args.pop("save_every")
    train(TrainSettings(**args), out, save_every=save_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
