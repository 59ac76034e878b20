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

Presets (explicit options override them): ``--preset v1`` (default) is the committed model;
``--preset v2`` trains on ``bench.shapes_v2`` clips (32x32 latent, 12 frames, textured
background with camera motion, one or two shapes) on two CPU threads in about 80 minutes,
warm-started from the v1 model (``--init``) with bf16 autocast (``--precision``);
``--preset v2-gpu`` a larger v2 model on CUDA with bf16 autocast in about 5 minutes:

    python -m bench.train_shapes --preset v2 --out bench/models/tiny_wan_shapes_v2.safetensors
    python -m bench.train_shapes --preset v2-gpu --out bench/models/tiny_wan_shapes_v2.safetensors

Every ``--state-every`` steps the run writes ``<out stem>.train-state.pt`` (model, EMA,
optimizer, RNG, step, loss history); the same command with ``--resume`` continues from it
(``--steps`` may grow on resume to extend a finished run: the learning-rate schedule stretches).
Log lines also go to ``<out stem>.log``.
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

from bench import shapes, shapes_v2

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
    data: str = "v1"              # "v1": bench.shapes; "v2": bench.shapes_v2 (texture, camera, two shapes)
    device: str = "cpu"
    save_dtype: str = "fp32"      # weights dtype of the written checkpoint: fp32, fp16 or bf16
    precision: str = "fp32"       # "bf16": bf16 autocast for the forward pass (CPU with AVX512-BF16 or CUDA)
    init: str = ""                # warm start: a checkpoint of the same architecture (repo-relative or absolute)
    pan: float = 8.0              # v2 data: largest camera shift over a clip, latent pixels
    camera_p: float = 0.8         # v2 data: share of clips whose camera moves


# Named settings; explicit command-line values override them. "v1" is the committed model.
PRESETS = {
    "v1": {},
    # Warm-started from the v1 model (same dim, 6 blocks; it already draws coherent moving shapes
    # for the same three prompts), then bf16 autocast: ~0.67 s per clip of 3072 tokens on two idle
    # AVX512-BF16 cores, 3600 steps of 2 clips in about 80 minutes. ~2.3 M parameters, 4.4 MiB fp16.
    # (The first v2 run, from scratch, fp32, batch 1, 4 blocks: 2000 steps in 86 min drew speckle.)
    "v2": dict(data="v2", frames=12, size=32, dim=128, ffn_dim=512, num_layers=6, batch=2, steps=3600, lr=3e-4,
               warmup=100, save_dtype="fp16", precision="bf16", threads=2,
               init="bench/models/tiny_wan_shapes.safetensors"),
    # ~10 M parameters (~20 MB in fp16); sized for about 5 minutes of one H100/H200 (bf16 autocast).
    # v2 warm-started, on clips whose camera always moves and pans up to 24 latent pixels (about
    # one token per latent frame, where a token flow can resolve it; v2 pans at most 8 px, 0.2 tokens).
    "v2-pan": dict(data="v2", frames=12, size=32, dim=128, ffn_dim=512, num_layers=6, batch=2, steps=3000, lr=2e-4,
                   warmup=50, save_dtype="fp16", precision="bf16", threads=2, pan=24.0, camera_p=1.0,
                   init="bench/models/tiny_wan_shapes_v2.safetensors"),
    "v2-gpu": dict(data="v2", frames=12, size=32, dim=256, ffn_dim=1024, num_layers=8, batch=32, steps=3000,
                   lr=5e-4, warmup=200, save_dtype="fp16", device="cuda", threads=8, precision="bf16"),
}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Settings that may differ between a run and its --resume without changing what is trained.
RESUME_FREE = ("threads", "device")


def build_model(s: TrainSettings):
    import comfy_host
    comfy_host.prepare_comfy_imports(cpu=s.device == "cpu")
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    model = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=s.dim, ffn_dim=s.ffn_dim, freq_dim=256,
                     text_dim=4096, out_dim=16, num_heads=s.dim // 128, num_layers=s.num_layers, qk_norm=True,
                     cross_attn_norm=True, eps=1e-6, operations=comfy.ops.disable_weight_init)
    # disable_weight_init leaves weights uninitialised: start from the harness's seeded init.
    sd = comfy_host.tiny_wan_state_dict(dim=s.dim, num_layers=s.num_layers, ffn_dim=s.ffn_dim, seed=s.seed)
    model.load_state_dict(sd, strict=True)
    if s.init:
        model.load_state_dict(init_weights(s), strict=True)
    return model.float()


def init_weights(s: TrainSettings) -> dict:
    from safetensors.torch import load_file
    path = Path(s.init) if Path(s.init).is_absolute() else REPO / s.init
    if not path.exists():
        raise SystemExit(f"--init {s.init}: no such checkpoint; give a .safetensors written by this script, "
                         "or --init '' to start from random weights")
    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    if sd["head.head.weight"].shape[1] != s.dim or sum(k.endswith(".ffn.0.weight") for k in sd) != s.num_layers:
        raise SystemExit(f"--init {s.init}: its dim/blocks differ from --dim {s.dim} --num-layers {s.num_layers}; "
                         "warm starts need the same architecture (or --init '' for random weights)")
    return sd


def sample_sigmas(gen, n: int, shift: float) -> torch.Tensor:
    u = torch.rand(n, generator=gen).clamp(1e-3, 1 - 1e-3)
    shifted = shift * u / (1 + (shift - 1) * u)
    use_shift = torch.rand(n, generator=gen) < 0.5
    return torch.where(use_shift, shifted, u)


def batch(gen, s: TrainSettings, contexts: torch.Tensor):
    if s.data == "v2":
        spec = shapes_v2.ClipSpecV2(frames=s.frames, size=s.size, pan=s.pan, camera_p=s.camera_p)
        clips = shapes_v2.sample(gen, s.batch, spec, device=s.device)
        x0, cls = clips.latent, clips.classes.cpu()
    else:
        spec = shapes.ClipSpec(frames=s.frames, size=s.size)
        cls = torch.randint(0, len(shapes.CLASSES), (s.batch,), generator=gen)
        paths, radii = shapes.random_paths(gen, s.batch, spec)
        x0 = shapes.encode(shapes.render(cls, paths, radii, s.size))
    ctx = contexts[cls]
    drop = torch.rand(s.batch, generator=gen) < s.null_prompt_p
    ctx = torch.where(drop[:, None, None], torch.zeros_like(ctx), ctx)
    return x0, ctx


def state_path(out: Path) -> Path:
    """The resumable training state beside the output (model, EMA, optimizer, RNG, history)."""
    return out.with_name(out.stem + ".train-state.pt")


def log_path(out: Path) -> Path:
    return out.with_suffix(".log")


def lr_at(s: TrainSettings, step: int) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    p = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr_final + 0.5 * (s.lr - s.lr_final) * (1 + math.cos(math.pi * p))


def start(s: TrainSettings, out: Path, resume: bool) -> dict:
    """Fresh run state, or the one saved by a previous run of the same settings."""
    saved = load_state(s, out) if resume else None
    torch.manual_seed(s.seed)
    model = build_model(s).to(s.device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.99))
    run = dict(model=model, ema=ema, opt=opt, gen=torch.Generator().manual_seed(s.seed), step=0, history=[],
               running=None, seconds=0.0)
    if saved is None:
        return run
    model.load_state_dict(saved["model"])
    ema.load_state_dict(saved["ema"])
    opt.load_state_dict(saved["opt"])
    run["gen"].set_state(saved["gen"])
    torch.set_rng_state(saved["torch_rng"])
    run.update(step=saved["step"], history=saved["history"], running=saved["running"], seconds=saved["seconds"])
    return run


def load_state(s: TrainSettings, out: Path) -> dict:
    path = state_path(out)
    if not path.exists():
        raise SystemExit(f"--resume: no training state at {path}; run the same command without --resume to start")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    differ = {k: (v, getattr(s, k)) for k, v in saved["settings"].items()
              if k not in RESUME_FREE and getattr(s, k, None) != v}
    if s.steps > saved["step"] and s.steps >= saved["settings"]["steps"]:
        differ.pop("steps", None)   # extending a run: the cosine schedule stretches to the new length
    if differ:
        raise SystemExit(f"--resume: settings differ from the saved run (saved, given): {differ}; "
                         "use the same --preset and options")
    return saved


def save_state(run: dict, s: TrainSettings, out: Path) -> None:
    path = state_path(out)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"settings": asdict(s), "model": run["model"].state_dict(), "ema": run["ema"].state_dict(),
                "opt": run["opt"].state_dict(), "gen": run["gen"].get_state(), "torch_rng": torch.get_rng_state(),
                "step": run["step"], "history": run["history"], "running": run["running"],
                "seconds": run["seconds"]}, tmp)
    os.replace(tmp, path)


def train_step(run: dict, s: TrainSettings, contexts: torch.Tensor) -> float:
    gen, model = run["gen"], run["model"]
    x0, ctx = batch(gen, s, contexts)
    sigma = sample_sigmas(gen, s.batch, s.sigma_shift)
    noise = torch.randn(x0.shape, generator=gen).to(s.device)
    x0, ctx, sigma = x0.to(s.device), ctx.to(s.device), sigma.to(s.device)
    sg = sigma[:, None, None, None, None]
    xt = (1 - sg) * x0 + sg * noise
    with torch.autocast(torch.device(s.device).type, dtype=torch.bfloat16, enabled=s.precision == "bf16"):
        pred = model(xt, sigma * 1000, ctx)
    loss = torch.nn.functional.mse_loss(pred.float(), noise - x0)
    for g in run["opt"].param_groups:
        g["lr"] = lr_at(s, run["step"])
    run["opt"].zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    run["opt"].step()
    with torch.no_grad():
        decay = min(s.ema, (1 + run["step"]) / (10 + run["step"]))
        for pe, pm in zip(run["ema"].parameters(), model.parameters()):
            pe.lerp_(pm, 1 - decay)
    return loss.item()


def train(s: TrainSettings, out: Path, log_every: int = 50, save_every: int = 0, state_every: int = 0,
          resume: bool = False, stop_at: int = 0) -> dict | None:
    """Train (or continue with ``resume``) and write the EMA checkpoint, its JSON and a log;
    every ``state_every`` steps the resumable state, every ``save_every`` an EMA snapshot.
    ``stop_at``: leave after that step with the state saved (a time-sliced run), no checkpoint."""
    torch.set_num_threads(s.threads)
    run = start(s, out, resume)
    contexts = torch.cat([shapes.class_context(i) for i in range(len(shapes.CLASSES))])  # [K, T, 4096]
    log_path(out).parent.mkdir(parents=True, exist_ok=True)
    logf = log_path(out).open("a")

    def log(line):
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    log(f"{'resume at step ' + str(run['step']) if run['step'] else 'start'}: {json.dumps(asdict(s))}")
    t0 = time.time() - run["seconds"]
    while run["step"] < s.steps:
        loss = train_step(run, s, contexts)
        run["running"] = loss if run["running"] is None else 0.98 * run["running"] + 0.02 * loss
        run["step"] += 1
        step, run["seconds"] = run["step"], time.time() - t0
        if step % log_every == 0 or step == s.steps:
            run["history"].append({"step": step, "loss": round(run["running"], 5), "seconds": round(run["seconds"], 1)})
            log(f"step {step}/{s.steps}  loss {run['running']:.4f}  {run['seconds']:.0f}s")
        if state_every and (step % state_every == 0 or step == s.steps):
            save_state(run, s, out)
        if save_every and step % save_every == 0 and step < s.steps:
            save(run["ema"], out.with_name(f"{out.stem}.step{step}{out.suffix}"), {"settings": asdict(s), "step": step},
                 DTYPES[s.save_dtype])
        if stop_at and step >= stop_at and step < s.steps:
            save_state(run, s, out)
            log(f"stopped at step {step}; continue with --resume")
            logf.close()
            return None

    history = run["history"]
    meta = {"settings": asdict(s), "classes": list(shapes.CLASSES), "codec": "bench.shapes (sign-weighted 16 "
            "channels, model space)", "prompt": "FastVMTTestConditioning(seed=0, tokens=8, text=<class>)",
            "final_loss": history[-1]["loss"] if history else None, "train_seconds": round(run["seconds"], 1),
            "torch": torch.__version__, "history": history}
    if s.data == "v2":
        meta["data"] = ("bench.shapes_v2: textured background with camera pan/zoom/rotation, one or two shapes "
                        "of the prompted class")
    save(run["ema"], out, meta, DTYPES[s.save_dtype])
    log(f"wrote {out}")
    logf.close()
    return meta


def save(model, out: Path, meta: dict, dtype: torch.dtype = torch.float32) -> None:
    from safetensors.torch import save_file
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = out.with_name(out.name + ".tmp")
    save_file(sd, str(tmp), metadata={"fastvmt_shapes": json.dumps({k: v for k, v in meta.items() if k != "history"})})
    os.replace(tmp, out)
    if "history" in meta:
        out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="v1",
                   help="named settings (v1: the committed model; v2: shapes v2 on CPU; v2-gpu: on CUDA); "
                        "options given explicitly override the preset")
    for name, value in asdict(TrainSettings()).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=None, help=f"default {value!r}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--save-every", type=int, default=500, help="also write intermediate checkpoints (0: never)")
    p.add_argument("--state-every", type=int, default=100,
                   help="write the resumable training state (<out>.train-state.pt) every N steps (0: never)")
    p.add_argument("--resume", action="store_true", help="continue from <out stem>.train-state.pt")
    p.add_argument("--log-every", type=int, default=50, help="log and record the loss every N steps")
    p.add_argument("--stop-at", type=int, default=0, help="save the state and leave after this step (0: run to the end)")
    args = vars(p.parse_args(argv))
    out, save_every, state_every = args.pop("out"), args.pop("save_every"), args.pop("state_every")
    resume, preset, stop_at, log_every = args.pop("resume"), args.pop("preset"), args.pop("stop_at"), args.pop("log_every")
    given = {k: v for k, v in args.items() if v is not None}
    s = TrainSettings(**{**PRESETS[preset], **given})
    if s.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {s.device}: torch sees no CUDA device here; use --device cpu (--preset v2)")
    if s.save_dtype not in DTYPES:
        raise SystemExit(f"--save-dtype {s.save_dtype!r}: use one of {sorted(DTYPES)}")
    if s.precision not in ("fp32", "bf16"):
        raise SystemExit(f"--precision {s.precision!r}: use fp32 or bf16")
    if s.data not in ("v1", "v2"):
        raise SystemExit(f"--data {s.data!r}: use v1 or v2")
    train(s, out, log_every=log_every, save_every=save_every, state_every=state_every, resume=resume, stop_at=stop_at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
