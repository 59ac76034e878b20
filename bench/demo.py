"""Install check: motion transfer in real ComfyUI, without downloads, in well under a minute on a CPU.

    python -m bench.demo [--out fastvmt_demo] [--seed 2]

Boots the ComfyUI it finds (like the tests: ``COMFYUI_PATH``, the pack's parent when it
sits in ``ComfyUI/custom_nodes/``, or ``~/comfy/ComfyUI``) in this process, loads the pack
and runs the motion-transfer graph (Load Latent -> Extract Motion -> FastVMT Guidance
Sampler) on the tiny shapes model shipped in ``bench/models`` with a generated reference:
one shape moving on a path, and a prompt for another shape. It writes

* ``demo.gif``: reference | no transfer | FastVMT, side by side, animated, each generated
  panel labelled with its motion-fidelity score;
* ``strip.png``: the same clips as frame strips, with their motion-fidelity scores;

and prints the scores. The toy model works on 16 x 16 latents straight from a fixed codec
(``bench/shapes.py``), so the pictures are small and blocky; they show the mechanism, not
Wan's quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import shapes

PANEL = 128    # pixels per panel side in the GIF
LABEL_H = 32   # two lines of text above each panel: what it shows, its motion-fidelity score
GAP = 4        # light columns between panels (half of it at the outer edges): dark clips stay apart
GAP_GREY = 200


def _panel(frame, label: str) -> np.ndarray:
    import cv2
    img = cv2.resize((frame.numpy().clip(0, 1) * 255).astype(np.uint8), (PANEL, PANEL),
                     interpolation=cv2.INTER_NEAREST)
    out = np.zeros((LABEL_H + PANEL, PANEL), np.uint8)
    out[LABEL_H:] = img
    for i, line in enumerate(label.split("\n")[:2]):
        cv2.putText(out, line, (3, 13 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 255, 1, cv2.LINE_AA)
    return out


def write_gif(path: Path, clips: list, ms_per_frame: int = 180) -> Path:
    """``clips``: (label, intensity [F, H, W]) pairs, shown side by side and looped; a label's
    second line (after a newline) is written under its first."""
    from PIL import Image
    frames = []
    for t in range(clips[0][1].shape[0]):
        row = np.concatenate([np.pad(_panel(c[t], label), ((0, 0), (GAP // 2, GAP - GAP // 2)),
                                     constant_values=GAP_GREY) for label, c in clips], axis=1)
        frames.append(Image.fromarray(row))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path


def run(host, out_dir: Path, seed: int = 2, steps: int = 20) -> dict:
    from bench import quality
    model = quality.install_shapes_model(host)
    spec = shapes.ClipSpec()
    ref = quality.shapes_reference(seed, spec)
    ref_name = quality.put_latent(ref["latent"], f"fastvmt_demo_{seed}")
    a, b = shapes.CLASSES[ref["a"]], shapes.CLASSES[ref["b"]]
    clips, scores = [(f"reference: {a}", ref["intensity"])], {}
    for name, overrides in (("no transfer", {"mode": "No_transfer"}), ("FastVMT", {})):
        # The released code's example: start from the reference noised to denoise 0.75.
        gen = quality.level2_clip(host, model, ref, ref_name, spec=spec, seed=seed, block=2, overrides=overrides,
                                  steps=steps, cfg=4.0, denoise=0.75)
        scores[name] = quality.score_clip(ref, gen)
        clips.append((f"{name}: {b}", gen))
    out_dir.mkdir(parents=True, exist_ok=True)
    labelled = [(label if i == 0 else f"{label}\nfidelity {scores[label.split(':')[0]]['fidelity_local']:.2f}", clip)
                for i, (label, clip) in enumerate(clips)]
    gif = write_gif(out_dir / "demo.gif", labelled)
    strip = quality.write_strip(out_dir / "strip.png", [labelled])
    return {"reference": a, "prompt": b, "scores": scores, "gif": gif, "strip": strip}


def main(argv=None, host=None) -> int:
    """The command; ``host``: an already booted ComfyHost (the test session's)."""
    p = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="fastvmt_demo", help="output folder (default fastvmt_demo)")
    p.add_argument("--seed", type=int, default=2, help="reference path, shapes and sampling seed (default 2)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    if host is None:
        import comfy_host
        try:
            host = comfy_host.bootstrap(tempfile.mkdtemp(prefix="fastvmt-demo-"))
            host.require_pack()
        except Exception as exc:  # noqa: BLE001 - the install check reports what is wrong and stops
            print(f"FastVMT demo: could not start ComfyUI with the pack: {exc}", file=sys.stderr)
            return 1
    res = run(host, Path(args.out), args.seed)
    s = res["scores"]
    print(f"reference: a {res['reference']} moving; prompt: a {res['prompt']}")
    for name, m in s.items():
        print(f"  {name:12s} motion fidelity {m['fidelity_local']:.2f} (paper's form {m['fidelity']:.2f}), "
              f"path step cosine {m['step_cos']:.2f}, draws a {m['shape']}")
    print(f"wrote {res['gif']} and {res['strip']} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
