"""FastVMT, the method: sliding-window attention motion flow, its losses, the
skip-step latent optimizer, the guided-step schedule and the settings.

Pure PyTorch. Nothing in this package imports ComfyUI, so it can be tested,
benchmarked and reused without a host.
"""

from .amf import MotionFlow, global_amf, sliding_window_amf, frame_pairs
from .losses import amf_loss, window_loss, total_loss, offset_weights
from .optimize import optimize_latent, OptimizeStats, linear_lr, released_lr
from .released_flow import released_flow, released_head_mean, check_released_grid
from .guidance import motion_flow, flow_guidance_loss, guidance_loss, head_mean, latent_optimizer_options
from .schedule import (guided_end_percent, guided_prefix, reference_sigma, uniform_percents, reference_carries_motion,
                       PURE_NOISE_SIGMA)
from .reference_noise import reference_noise
from .settings import (FastVMTSettings, MODES, REFERENCE_NOISE_MODES, KEEP_ACTIVATIONS_MODES, STEP_SKIP_FIELDS,
                       EXTRACTION_FIELDS, TRANSFER_MODES, FLOW_DEFINITIONS, MAX_MOTION_STRENGTH)
from .camera_motion import CameraFit, fit_camera, decompose, affine_field
from .motion_controls import (MotionControls, MotionTargets, build_controls, motion_targets, controlled_loss,
                              latent_region, confine, keep_outside, region_change, controls_summary)
from .memory import PassGeometry, PassMemory, gradient_pass_memory, most_kept_blocks, published_geometry, WAN_MODELS
from .fidelity import motion_fidelity, motion_fidelity_report, FidelityReport
from .frame_windows import window_problem, windowed_loss

__all__ = [
    "MotionFlow", "global_amf", "sliding_window_amf", "frame_pairs",
    "amf_loss", "window_loss", "total_loss", "offset_weights",
    "optimize_latent", "OptimizeStats", "linear_lr", "released_lr",
    "released_flow", "released_head_mean", "check_released_grid",
    "motion_flow", "flow_guidance_loss", "guidance_loss", "head_mean", "latent_optimizer_options",
    "guided_end_percent", "guided_prefix", "reference_sigma", "uniform_percents", "reference_noise",
    "reference_carries_motion", "PURE_NOISE_SIGMA",
    "FastVMTSettings", "MODES", "REFERENCE_NOISE_MODES", "KEEP_ACTIVATIONS_MODES", "STEP_SKIP_FIELDS",
    "EXTRACTION_FIELDS", "TRANSFER_MODES", "FLOW_DEFINITIONS", "MAX_MOTION_STRENGTH", "CameraFit", "fit_camera", "decompose",
    "affine_field", "MotionControls", "MotionTargets", "build_controls", "motion_targets", "controlled_loss",
    "latent_region", "confine", "keep_outside", "region_change", "controls_summary", "PassGeometry", "PassMemory", "gradient_pass_memory", "most_kept_blocks",
    "published_geometry", "WAN_MODELS",
    "motion_fidelity", "motion_fidelity_report", "FidelityReport", "window_problem", "windowed_loss",
]
