"""Motion Fidelity node: the paper's motion fidelity metric between a reference clip and a
generated clip, with a text report and a track overlay (fastvmt_core.fidelity does the work)."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io, ui

from ..fastvmt_core.fidelity import MATCH_RADIUS, draw_tracks, motion_fidelity_report, resample_frames

log = logging.getLogger("FastVMT")

CATEGORY = "FastVMT"


class MotionFidelity(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTMotionFidelity",
            display_name="Motion Fidelity",
            category=CATEGORY,
            description="Scores how well the generated video follows the reference video's motion (the FastVMT "
                        "paper's motion fidelity, after Yatim et al. 2024). Points are tracked in both clips (KLT); "
                        "each generated track is matched to the nearby reference track (starting within "
                        "match_radius) that moves most alike (mean cosine of the per-frame displacements) and vice "
                        "versa; the score averages both. 1 = same motion, about 0 = unrelated or one clip still, "
                        "-1 = opposite. Only motion counts, not appearance.",
            inputs=[
                io.Image.Input("reference", tooltip="Reference video frames (e.g. the frames given to Extract "
                               "Motion, from Load Video -> Get Video Components)."),
                io.Image.Input("generated", tooltip="Generated video frames (e.g. VAE Decode of the FastVMT "
                               "sampler's latent). Resized to the reference's size and its tracks resampled to the "
                               "reference's frame count when they differ."),
                io.Int.Input("max_tracks", default=400, min=1, max=5000, optional=True,
                             tooltip="Most points tracked per clip (corners of the first frame). More is slower "
                                     "and steadier."),
                io.Int.Input("trail", default=10, min=0, max=1000, optional=True,
                             tooltip="Frames of recent path drawn behind each point in the visualisation."),
                io.Float.Input("match_radius", default=MATCH_RADIUS, min=0.01, max=2.0, step=0.01, optional=True,
                               tooltip="How far from its start (share of the frame diagonal) a track looks for its "
                                       "partner in the other clip. 0.1 (default) compares motion at the same "
                                       "place, so a reversed motion scores below a still one. 1.0: anywhere, the "
                                       "paper's unrestricted best match. Raise it if the generated subject moves "
                                       "at another place than the reference's."),
            ],
            outputs=[
                io.Float.Output("score", tooltip="Motion fidelity in [-1, 1]; 1 = identical motion. 0.0 when a "
                                "clip has no point that can be tracked through all frames (see the report)."),
                io.String.Output("report", tooltip="Score, track counts, global (camera) motion error in "
                                 "pixels per frame, and notes (resizing, resampling, tracking problems)."),
                io.Image.Output("visualisation", tooltip="The generated frames (at the reference's size and frame "
                                "count) with the reference tracks in cyan and the generated tracks in orange: "
                                "where motion agrees, both trails point the same way."),
            ],
        )

    @classmethod
    def execute(cls, reference, generated, max_tracks=400, trail=10, match_radius=MATCH_RADIUS) -> io.NodeOutput:
        for name, x in (("reference", reference), ("generated", generated)):
            if x.ndim != 4 or x.shape[0] == 0:
                raise ValueError(f"{name}: expected video frames [frames, height, width, channels], got shape "
                                 f"{tuple(x.shape)}")
        rep = motion_fidelity_report(reference, generated, max_tracks=max_tracks, match_radius=match_radius)
        text = rep.summary() + "\nvisualisation: reference tracks cyan, generated tracks orange"
        frames = resample_frames(generated, rep.frames, rep.width, rep.height)
        vis = draw_tracks(frames, rep.reference_tracks, rep.generated_tracks, trail=trail)
        log.info("%s", text)
        return io.NodeOutput(rep.score, text, torch.from_numpy(vis), ui=ui.PreviewText(text))
