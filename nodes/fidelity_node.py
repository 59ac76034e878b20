"""Motion Fidelity node: the paper's motion fidelity metric between a reference clip and a
generated clip, with a text report and a track overlay (fastvmt_core.fidelity does the work).

Tracking is KLT unless the user picks a CoTracker3 checkpoint from ComfyUI's
models/cotracker folder (registered here; extra_model_paths.yaml can add more places)."""

from __future__ import annotations

import logging
import os

import torch
from comfy_api.latest import io, ui

import comfy.model_management
import comfy.utils
import folder_paths

from fastvmt_core.cotracker import CoTrackerPointTracker, load_cotracker
from fastvmt_core.fidelity import MATCH_RADIUS, draw_tracks, motion_fidelity_report, resample_frames

log = logging.getLogger("FastVMT")

CATEGORY = "FastVMT"
KLT = "KLT (built-in)"
COTRACKER_FOLDER = "cotracker"


def register_cotracker_folder():
    """models/cotracker: where CoTracker3's scaled_offline.pth goes (.pth, .pt, .safetensors)."""
    path = os.path.join(folder_paths.models_dir, COTRACKER_FOLDER)
    if COTRACKER_FOLDER in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(COTRACKER_FOLDER, path)
    else:
        folder_paths.folder_names_and_paths[COTRACKER_FOLDER] = ([path], set(folder_paths.supported_pt_extensions))


register_cotracker_folder()


def cotracker_tracker(filename: str) -> CoTrackerPointTracker:
    """Load the checkpoint picked in ``tracker`` (seconds) so a wrong file fails before tracking."""
    path = folder_paths.get_full_path(COTRACKER_FOLDER, filename)
    if path is None:
        raise ValueError(f"tracker: {filename!r} is not in ComfyUI's models/{COTRACKER_FOLDER} folder any more; "
                         f"pick another file or {KLT!r}")
    try:
        state_dict = comfy.utils.load_torch_file(path, safe_load=True)
        model = load_cotracker(state_dict, name=filename)
    except Exception as exc:  # an unreadable or foreign file: say which input and what to do
        raise ValueError(f"tracker: cannot use {filename!r} as CoTracker3: {exc}. Pick {KLT!r} or put CoTracker3's "
                         f"offline checkpoint (scaled_offline.pth from huggingface.co/facebook/cotracker3) in "
                         f"models/{COTRACKER_FOLDER}") from exc
    bars = []

    def progress(done, total):  # one bar per clip; a stop requested in the UI ends the run here
        comfy.model_management.throw_exception_if_processing_interrupted()
        if done == 0:
            bars.append(comfy.utils.ProgressBar(total))
        bars[-1].update_absolute(done, total)

    device = comfy.model_management.get_torch_device()
    # room for the tracker next to models ComfyUI keeps loaded: 81 frames, 400 points took 2.3 GB on CPU
    comfy.model_management.free_memory(3 * 1024 ** 3, device)
    return CoTrackerPointTracker(model, device=device,
                                 name=f"CoTracker3 ({filename})", progress=progress)


class MotionFidelity(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTMotionFidelity",
            display_name="Motion Fidelity",
            category=CATEGORY,
            description="Scores how well the generated video follows the reference video's motion (the FastVMT "
                        "paper's motion fidelity, after Yatim et al. 2024). Points are tracked in both clips (KLT, or "
                        "CoTracker3 where its checkpoint is in models/cotracker); "
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
                io.Combo.Input("tracker", options=[KLT] + folder_paths.get_filename_list(COTRACKER_FOLDER),
                               default=KLT, optional=True,
                               tooltip="Point tracker. KLT (built-in): OpenCV Lucas-Kanade on corner points, "
                                       "nothing to download. Or a CoTracker3 checkpoint from models/cotracker "
                                       "(scaled_offline.pth from huggingface.co/facebook/cotracker3), the tracker "
                                       "of the paper's metric: a grid of points, hidden points left out. Slow "
                                       "on a CPU (about 3 s per frame at 400 points on 2 cores)."),
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
            # it reports (its score box and the history), so a queued graph runs it with nothing downstream
            is_output_node=True,
        )

    @classmethod
    def execute(cls, reference, generated, max_tracks=400, trail=10, match_radius=MATCH_RADIUS,
                tracker=KLT) -> io.NodeOutput:
        for name, x in (("reference", reference), ("generated", generated)):
            if x.ndim != 4 or x.shape[0] == 0:
                raise ValueError(f"{name}: expected video frames [frames, height, width, channels], got shape "
                                 f"{tuple(x.shape)}")
        point_tracker = None if tracker in (None, KLT) else cotracker_tracker(tracker)
        try:
            rep = motion_fidelity_report(reference, generated, max_tracks=max_tracks, match_radius=match_radius,
                                         tracker=point_tracker)
        finally:
            if point_tracker is not None:  # 100 MB of weights: do not keep them on the GPU
                point_tracker.model.to("cpu")
                comfy.model_management.soft_empty_cache()
        text = rep.summary() + "\nvisualisation: reference tracks cyan, generated tracks orange"
        frames = resample_frames(generated, rep.frames, rep.width, rep.height)
        vis = draw_tracks(frames, rep.reference_tracks, rep.generated_tracks, trail=trail)
        log.info("%s", text)
        return io.NodeOutput(rep.score, text, torch.from_numpy(vis), ui=ui.PreviewText(text))
