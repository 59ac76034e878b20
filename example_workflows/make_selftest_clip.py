#!/usr/bin/env python3
"""Cuts the self-test's reference clip from the FastVMT authors' example video.

    python example_workflows/make_selftest_clip.py SOURCE.mp4 [--frames 33] [--out PATH]

SOURCE is ``data/source.mp4`` of the FastVMT authors' public code release (MIT License,
"Copyright (c) 2026 FastVMT"; see ``example_workflows/input/README.md``): a baseball
player running while the camera pans, 81 frames of 640x368 at 15 fps. The cut keeps its
first ``--frames`` frames (the player runs across the field and the camera follows),
its size and its frame rate, re-encoded as H.264 (yuv420p, CRF 23, preset medium, one
thread: the same PyAV and libx264 write the same bytes). Written with PyAV (``av``).
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "input" / "fastvmt_selftest_reference.mp4"
MAX_BYTES = 250_000   # the repository carries it


def read_frames(source: Path, frames: int) -> tuple:
    """(the first ``frames`` RGB frames, frame rate) of ``source``."""
    import av
    with av.open(str(source)) as c:
        stream = c.streams.video[0]
        rate = stream.average_rate or Fraction(15)
        out = []
        for frame in c.decode(stream):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    if len(out) < frames:
        raise SystemExit(f"{source}: only {len(out)} frames, the cut needs {frames}")
    return out, rate


def write_clip(frames: list, rate: Fraction, out: Path) -> None:
    import av
    out.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(out), "w", options={"fflags": "+bitexact"}) as c:
        stream = c.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "medium", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="the authors' data/source.mp4")
    ap.add_argument("--frames", type=int, default=33, help="frames to keep from the start (4k+1; default 33)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    args = ap.parse_args(argv)
    if args.frames < 1 or (args.frames - 1) % 4:
        raise SystemExit(f"--frames {args.frames}: Wan encodes 4k+1 frames (33, 49, ...)")
    frames, rate = read_frames(args.source, args.frames)
    write_clip(frames, rate, args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}, {rate} fps, "
          f"{size // 1000} KB)")
    if size > MAX_BYTES:
        print(f"warning: over {MAX_BYTES // 1000} KB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
