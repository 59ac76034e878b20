"""Guidance under ComfyUI's context windows (WAN Context Windows (Manual) on the model).

Such a sampler denoises a long latent window by window: each model call runs the DiT on
one window of latent frames at a time and fuses the results. Guidance does the same. At
each guided step it asks the run's context handler for that step's windows. It reads the
reference's flow on the same frames of the reference, and optimises the latent against
the mean of the windows' losses, one window's gradient pass at a time (fastvmt_core.
frame_windows). Why per window, not one pass over the whole latent:

* the motion the sampler makes comes out of per-window attention, so that is what the
  flow must measure; a whole-latent pass of 161 frames is a computation the sampler
  never runs, at a length Wan was not trained on;
* a gradient pass then needs one window's memory, which the user has already fitted
  sampling into, whatever the video's length.

The flow pairs frames up to ``temporal_span`` apart, so windows must overlap by at least
the span: then every frame pair the flow compares lies inside some window. That, and the
rest of what the windows must be, is checked at every guided sigma before sampling.
"""

from __future__ import annotations

import dataclasses

import torch

from fastvmt_core import FastVMTSettings, window_problem
from .comfy_compat import (LATENT_FRAME_DIM, context_handler, frame_conds_left_whole, handler_dim, handler_windows,
                           window_conds, with_pass_window)
from .qk_capture import QKPass

NODE = "WAN Context Windows (Manual)"
LATENT_TO_VIDEO = 4   # video frames per latent frame after the first (the node converts with (n - 1) // 4 + 1)


def windows_at(model_options: dict, base_model, conds: list, x, sigma) -> list[list[int]] | None:
    """The latent frames of each window the run's context handler uses on ``x`` at ``sigma``
    (one of the call's sigmas); None when it runs the whole latent (no handler, or a video
    no longer than one window)."""
    handler = context_handler(model_options)
    if handler is None:
        return None
    try:
        windows = handler_windows(handler, base_model, conds, x, sigma, model_options)
    except TypeError as exc:
        raise ValueError(f"model: a context handler FastVMT does not know ({exc}) is on the model. Guidance runs "
                         f"with ComfyUI's own context windows ({NODE}); remove the other context node.") from None
    if windows is not None and handler_dim(handler) != LATENT_FRAME_DIM:
        raise ValueError(f"Context Windows (Manual): its windows run over dim {handler_dim(handler)}, but a Wan "
                         f"latent's frames are dim {LATENT_FRAME_DIM}. Use {NODE} (or set dim to 2).")
    return windows


def check_guided_windows(model_options: dict, base_model, conds: list, latent_shape, sigmas,
                         settings: FastVMTSettings) -> list[int]:
    """Before sampling: the windows at each guided sigma can carry the flow (else a
    ValueError that names the node's inputs and the fix). Returns the distinct window
    lengths, in latent frames ([] when the run uses no windows)."""
    x = torch.empty(tuple(latent_shape), device="meta")   # the handler reads sizes only
    lengths = set()
    for sigma in sigmas:
        windows = windows_at(model_options, base_model, conds, x, sigma)
        if windows is None:
            continue
        problem = window_problem(windows, latent_shape[LATENT_FRAME_DIM], settings.temporal_span)
        if problem is not None:
            raise ValueError(window_message(problem, settings.temporal_span))
        lengths.update(len(w) for w in windows)
        _check_conds_cut(model_options, conds, x, windows[0])
    return sorted(lengths)


def _check_conds_cut(model_options: dict, conds: list, x, frames) -> None:
    """A cond the handler leaves whole would fail the window's model call, in sampling as in
    guidance: said before sampling, with what works."""
    frames_full = x.shape[LATENT_FRAME_DIM]
    if len(frames) == frames_full:
        return
    left = frame_conds_left_whole(window_conds(context_handler(model_options), conds, x, frames), frames_full)
    if left:
        raise ValueError(f"{NODE}: this ComfyUI's context windows do not cut the conditioning {', '.join(left)} "
                         "(a start image: WanImageToVideo's c_concat, Wan 2.2 TI2V's denoise_mask) to each window. "
                         "Every window would be conditioned on the whole video's frames: c_concat fails at the "
                         "first window, also with a plain KSampler, and denoise_mask gives a window's frames "
                         "other frames' noise levels. Sample image-to-video without context windows (length at "
                         "most context_length), or use a ComfyUI whose context windows cut these conds.")


def window_message(problem: str, span: int) -> str:
    """The error for windows that cannot carry the flow, with the node settings that can."""
    overlap = LATENT_TO_VIDEO * (span - 1) + 1     # video frames giving `span` latent frames
    length = LATENT_TO_VIDEO * span + 1            # ... and span + 1
    return (f"{NODE}: FastVMT guides each context window with frame pairs up to temporal_span ({span}) latent "
            f"frames apart, but {problem}. Set context_overlap to at least {overlap} video frames ({span} latent "
            f"frames) and context_length to at least {length}, with context_schedule standard_static or "
            "standard_uniform and context_stride 1; or lower temporal_span in Extract Motion.")


def window_pass(spec: QKPass, x_full, frames, cache: dict) -> QKPass:
    """``spec`` for one window: its conds cut to ``frames`` of the whole latent ``x_full``,
    the window exposed to the model as the handler exposes it. Cached per run in ``cache``."""
    key = (id(spec), tuple(frames))
    if key not in cache:
        handler = context_handler(spec.model_options)
        cache[key] = dataclasses.replace(spec, conds=window_conds(handler, spec.conds, x_full, frames),
                                         model_options=with_pass_window(spec.model_options, handler, frames))
    return cache[key]


def windows_text(step_log: list) -> str:
    """One summary line on the windows guidance ran in, or ''."""
    counts = sorted({e["windows"] for e in step_log if e.get("windows")})
    if not counts:
        return ""
    lengths = "/".join(map(str, sorted({n for e in step_log for n in e.get("window_lengths", ())})))
    many = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"context windows: guidance ran per window, {many} windows of {lengths} latent frames per guided step"
