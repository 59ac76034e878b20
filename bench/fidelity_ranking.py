"""Does Motion Fidelity rank motion? One clip against itself played four ways.

    python -m bench.fidelity_ranking VIDEO [--frames 33] [--json out.json]
    python -m bench.fidelity_ranking --synthetic      # clips with known motion, made here
    ... [--cotracker models/cotracker/scaled_offline.pth]   # track with CoTracker3, not KLT

The reference is the first ``--frames`` frames of VIDEO. It is scored against: itself
(identical), itself at half speed (the first half stretched over the same frame count),
its first frame held (still) and itself backwards (reversed). A metric of motion must
rank identical > slowed > still > reversed: a motion played backwards is further from
the reference than no motion. Printed for the Motion Fidelity node's default (matches
within 0.1 of the frame diagonal, tracklets weighted by speed) and for the paper's form
(best match anywhere, equal weights). ``--synthetic`` ranks clips made here instead:
a camera pan following a still subject, and a disc moving over a still background.
``--cotracker CHECKPOINT`` tracks with CoTracker3 (fastvmt_core.cotracker) instead of KLT,
on the GPU when there is one; each clip is tracked once and reused across the forms.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.amf import machine_line, write_json
from fastvmt_core.fidelity import PAPER_FORM, motion_fidelity

ORDER = ("identical", "slowed", "still", "reversed")
FORMS = {"default": {}, "paper": PAPER_FORM}  # the node's default; the paper's form (docs/motion_fidelity.md)


def read_frames(path: str, count: int) -> np.ndarray:
    """The first ``count`` frames of a video as float32 [T, H, W, 3] in 0..1."""
    import av
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < 2:
        raise ValueError(f"{path}: needs at least 2 frames, got {len(frames)}")
    return np.stack(frames).astype(np.float32) / 255.0


def texture(h: int, w: int, seed: int = 0, cell: int = 6) -> np.ndarray:
    """Smooth random colour texture [h, w, 3] (trackable corners everywhere)."""
    import cv2
    rng = np.random.default_rng(seed)
    small = rng.random((h // cell + 2, w // cell + 2, 3)).astype(np.float32)
    big = cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[:h, :w], 0.0, 1.0)


def translating(frames: int, h: int, w: int, velocity=(2.0, 1.0), seed: int = 0) -> np.ndarray:
    """A texture moving by ``velocity`` (vx, vy) pixels per frame (content moves, like a pan)."""
    import cv2
    vx, vy = velocity
    pad = int(np.ceil((frames - 1) * max(abs(vx), abs(vy)))) + 2
    tex = texture(h + 2 * pad, w + 2 * pad, seed)
    out = [cv2.warpAffine(tex, np.float32([[1, 0, t * vx - pad], [0, 1, t * vy - pad]]), (w, h),
                          flags=cv2.INTER_LINEAR) for t in range(frames)]
    return np.stack(out).astype(np.float32)


def followed_subject(frames: int = 17, h: int = 64, w: int = 80, pan=(2.0, 1.0), seed: int = 0,
                     box: int = 24) -> np.ndarray:
    """A camera pan following a subject: the background translates, a textured subject stays
    put in the middle of the frame (like a runner the camera follows)."""
    out = translating(frames, h, w, velocity=pan, seed=seed)
    y, x = (h - box) // 2, (w - box) // 2
    out[:, y:y + box, x:x + box] = texture(box, box, seed + 100, cell=4)
    return out


def moving_disc(frames: int = 17, h: int = 64, w: int = 96) -> np.ndarray:
    """A bright disc moving right and down over a still gradient (a small object, much still
    background)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((frames, h, w, 3), np.float32)
    for t in range(frames):
        out[t] = np.stack([xs / w, ys / h, np.full_like(xs, 0.25)], -1)
        out[t][(xs - 10 - 2 * t) ** 2 + (ys - 10 - t) ** 2 < 64] = 1.0
    return out


SYNTHETIC = {"pan following a still subject": followed_subject, "disc over a still background": moving_disc}


def variants(clip: np.ndarray) -> dict:
    t = len(clip)
    return {"identical": clip.copy(),
            "slowed": clip[np.round(np.linspace(0, (t - 1) / 2, t)).astype(int)],
            "still": np.repeat(clip[:1], t, axis=0),
            "reversed": clip[::-1].copy()}


class TrackOnce:
    """A fidelity tracker that tracks each distinct clip once (scores reuse the tracks)."""

    def __init__(self, tracker):
        self.tracker, self.name, self.cache = tracker, tracker.name, {}

    def __call__(self, frames: np.ndarray, max_tracks: int) -> np.ndarray:
        import hashlib
        key = (hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest(), frames.shape, max_tracks)
        if key not in self.cache:
            self.cache[key] = self.tracker(frames, max_tracks)
        return self.cache[key]


def cotracker_from_file(path: str) -> TrackOnce:
    import torch
    from fastvmt_core.cotracker import CoTrackerPointTracker, load_cotracker
    if path.endswith((".safetensors", ".sft")):
        from safetensors.torch import load_file
        state_dict = load_file(path)
    else:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TrackOnce(CoTrackerPointTracker(load_cotracker(state_dict, name=path), device=device,
                                           name=f"CoTracker3 ({Path(path).name})"))


def rank(clip: np.ndarray, tracker=None) -> dict:
    out = {}
    for form, options in FORMS.items():
        if tracker is not None:
            options = dict(options, tracker=tracker)
        scores = {name: motion_fidelity(clip, v, **options) for name, v in variants(clip).items()}
        out[form] = {"scores": scores,
                            "ranked": all(scores[a] > scores[b] for a, b in zip(ORDER, ORDER[1:])),
                            "still_minus_reversed": scores["still"] - scores["reversed"]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fidelity_ranking", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?")
    p.add_argument("--frames", type=int, default=33)
    p.add_argument("--synthetic", action="store_true", help="rank the clips with known motion made here")
    p.add_argument("--cotracker", metavar="CHECKPOINT", help="track with CoTracker3 (scaled_offline.pth), not KLT")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if (args.video is None) == (not args.synthetic):
        p.error("give a VIDEO or --synthetic")
    start = time.perf_counter()
    if args.synthetic:
        clips = {name: make() for name, make in SYNTHETIC.items()}
    else:
        clips = {Path(args.video).name: read_frames(args.video, args.frames)}
    tracker = cotracker_from_file(args.cotracker) if args.cotracker else None
    out = {"machine": machine_line("cpu"), "tracker": tracker.name if tracker else "KLT", "clips": {}}
    print(f"tracker: {out['tracker']}")
    print("| clip | form | " + " | ".join(ORDER) + " | ranked | still - reversed |")
    print("|---" * (len(ORDER) + 4) + "|")
    for name, clip in clips.items():
        res = rank(clip, tracker)
        out["clips"][name] = {"frames": len(clip), "size": [clip.shape[2], clip.shape[1]], "results": res}
        for form, r in res.items():
            print(f"| {name} ({len(clip)} x {clip.shape[2]}x{clip.shape[1]}) | {form} | "
                  + " | ".join(f"{r['scores'][k]:.2f}" for k in ORDER)
                  + f" | {'yes' if r['ranked'] else 'no'} | {r['still_minus_reversed']:+.2f} |")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
