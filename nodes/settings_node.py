"""Step-Skip Settings: the guidance knobs of FastVMTSettings as a node (the extraction knobs
are Extract Motion's). Inputs are named after the settings fields (STEP_SKIP_FIELDS)."""

from __future__ import annotations

from comfy_api.latest import io

from fastvmt_core import (FLOW_DEFINITIONS, KEEP_ACTIVATIONS_MODES, MAX_MOTION_STRENGTH, MODES,
                          REFERENCE_NOISE_MODES, TRANSFER_MODES, FastVMTSettings)

CATEGORY = "FastVMT"
Settings = io.Custom("FASTVMT_SETTINGS")
DEFAULTS = FastVMTSettings()


def settings_or_error(**fields) -> FastVMTSettings:
    """The defaults with ``fields``; a bad value names the setting."""
    try:
        return DEFAULTS.replace(**fields)
    except ValueError as exc:
        raise ValueError(f"FastVMT settings: {exc}") from None


class StepSkipSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = DEFAULTS
        return io.Schema(
            node_id="FastVMTStepSkipSettings",
            display_name="Step-Skip Settings",
            category=CATEGORY,
            description="Guidance settings for FastVMT. Optional: the sampler uses these defaults (the paper's) "
                        "when this node is not connected.",
            inputs=[
                io.Combo.Input("mode", options=list(MODES), default=d.mode,
                               tooltip="effi_AMF: FastVMT (sliding-window flow, gradient reuse). AMF: full "
                                       "global flow over all frame pairs, gradient every inner step (the "
                                       "DiTFlow way, slow). No_transfer: plain sampling."),
                io.Int.Input("interval", default=d.interval, min=1, max=100,
                             tooltip="Skip interval: recompute the motion loss gradient every N inner steps "
                                     "and reuse it in between (paper Delta = 3; 1 = no skipping)."),
                io.Int.Input("inner_steps", default=d.inner_steps, min=0, max=200,
                             tooltip="Optimizer steps on the latent per guided denoising step (paper J = 10)."),
                io.Float.Input("lr_start", default=d.lr_start, min=0.0, max=1.0, step=0.0001,
                               tooltip="AdamW learning rate at the first inner step (paper 0.003), decaying "
                                       "linearly to lr_end."),
                io.Float.Input("lr_end", default=d.lr_end, min=0.0, max=1.0, step=0.0001,
                               tooltip="AdamW learning rate at the last inner step (paper 0.002)."),
                io.Float.Input("guided_fraction", default=d.guided_fraction, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the denoising process that is guided, from its start (paper 0.2: "
                                       "the first 10 of 50 steps). It is a share of the whole run, so KSampler"
                                       "Advanced splits and Wan 2.2's two experts guide the same steps as one "
                                       "KSampler would."),
                io.Float.Input("lambda_amf", default=d.lambda_amf, min=0.0, max=1000.0, step=0.1,
                               tooltip="Weight of the motion-flow loss (paper lambda_AMF = 5)."),
                io.Float.Input("lambda_window", default=d.lambda_window, min=0.0, max=1000.0, step=0.1,
                               tooltip="Weight of the correspondence-window loss (paper lambda_window = 1)."),
                io.Combo.Input("reference_noise", options=list(REFERENCE_NOISE_MODES), default=d.reference_noise,
                               tooltip="renoise: the clean reference is re-noised to each guided step's noise "
                                       "level with a fixed seed (the released code). clean: its motion is read "
                                       "once from the clean latent (one reference pass per run)."),
                io.Int.Input("reference_seed", default=d.reference_seed, min=0, max=0xffffffffffffffff,
                             tooltip="Seed of the fixed noise used to re-noise the reference."),
                io.Float.Input("reference_sigma_cap", default=d.reference_sigma_cap, min=0.0, max=1.0, step=0.01,
                               optional=True,
                               tooltip="The reference is re-noised to min(guided step's sigma, this cap). 1.0 "
                                       "(default) reads it at the generation's own noise level, so both flows carry "
                                       "the same noise-level bias. At sigma 1.0 (a 4-step distilled schedule's one "
                                       "guided step) that reference is pure noise and the run summary says so; a "
                                       "cap below 1, e.g. 0.8, gives it a reference that still shows motion."),
                io.Int.Input("exit_block", default=d.exit_block, min=-1, max=999, optional=True,
                             tooltip="Advanced, for benchmarks. -1 (default): guidance passes stop inside the "
                                     "motion block once its queries/keys exist (fastest). N: run blocks up to N "
                                     "(the released code stops after 20). 999: the whole DiT and head."),
                io.Combo.Input("keep_activations", options=list(KEEP_ACTIVATIONS_MODES), default=d.keep_activations,
                               optional=True,
                               tooltip="Gradient passes either keep every block's activations (faster: no "
                                       "recompute) or keep only block inputs and recompute one block at a time "
                                       "(much less memory). auto (default): keep them when the estimated need "
                                       "fits the device's free memory. never: always recompute. always: keep "
                                       "them even if that offloads model weights."),
                io.Float.Input("motion_strength", default=d.motion_strength, min=0.0, max=MAX_MOTION_STRENGTH,
                               step=0.05, optional=True,
                               tooltip="How much of the reference's motion to transfer: the reference's "
                                       "displacements are scaled by this before the generation is compared with "
                                       "them. 1.0 (default): as the reference moves. 0: hold still. 0.5: half. "
                                       "Above 1 exaggerates. Applies to the part chosen by 'transfer'."),
                io.Combo.Input("transfer", options=list(TRANSFER_MODES), default=d.transfer, optional=True,
                               tooltip="Which part of the reference's motion to transfer. all (default): the whole "
                                       "motion. camera: only its global motion (pan, zoom, roll: an affine motion "
                                       "fitted per frame pair, robust to moving objects); the generated objects "
                                       "move freely. objects: only what moves apart from that camera motion; the "
                                       "generated camera is free. Parallax is not a global motion (docs/motion_controls.md)."),
                io.Combo.Input("flow_definition", options=list(FLOW_DEFINITIONS), default=d.flow_definition,
                               optional=True,
                               tooltip="paper (default): the motion flow and losses of the paper's equations. "
                                       "released: the authors' released code, quirks included (the code behind "
                                       "the paper's figures; docs/differences.md); set temporal_span 4 on "
                                       "Extract Motion to match its runs. Needs a token grid divisible by the "
                                       "tile and at least the window, and no motion controls."),
            ],
            outputs=[Settings.Output("settings")],
        )

    @classmethod
    def execute(cls, **inputs) -> io.NodeOutput:
        # Node inputs are named after the settings fields (STEP_SKIP_FIELDS); optional ones
        # missing from older workflows take the dataclass defaults.
        return io.NodeOutput(settings_or_error(**inputs))
