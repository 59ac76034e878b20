"""Every FastVMT knob in one validated dataclass.

Defaults follow the paper (section 4.1, appendix B.1) and the authors' released
code where the paper is silent; docs/how_it_works.md and docs/differences.md list the choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODES = ("effi_AMF", "AMF", "No_transfer")
REFERENCE_NOISE_MODES = ("renoise", "clean")
KEEP_ACTIVATIONS_MODES = ("auto", "always", "never")
TRANSFER_MODES = ("all", "camera", "objects")
FLOW_DEFINITIONS = ("paper", "released")

# The Step-Skip Settings node's inputs, in widget order (the optional ones last). Node
# inputs carry the field names, so every default below is the node's, the example
# workflows' and the benchmarks' default.
STEP_SKIP_FIELDS = ("mode", "interval", "inner_steps", "lr_start", "lr_end", "guided_fraction", "lambda_amf",
                    "lambda_window", "reference_noise", "reference_seed", "reference_sigma_cap", "exit_block",
                    "keep_activations", "motion_strength", "transfer", "flow_definition")
# Extract Motion's settings (stored in motion files); Step-Skip Settings holds the rest.
EXTRACTION_FIELDS = ("motion_block", "temporal_span", "window", "tile", "tau")
MAX_MOTION_STRENGTH = 10.0


@dataclass(frozen=True)
class FastVMTSettings:
    mode: str = "effi_AMF"            # effi_AMF: sliding window + skipping; AMF: global flow, every step; No_transfer
    motion_block: int = 14            # DiT block whose self-attention Q/K give the motion (15th of 30)
    temporal_span: int = 5            # frame offsets 1..span (paper s_f)
    window: int = 21                  # local window side in tokens (paper l)
    tile: tuple[int, int] = (3, 4)    # tile (rows, cols) sharing one window
    tau: float = 1.0                  # attention temperature
    lambda_amf: float = 5.0
    lambda_window: float = 1.0
    alpha: float = 0.2                # offset weights decay 1.0 -> 1 - alpha
    inner_steps: int = 10             # J, optimizer steps per guided step
    interval: int = 3                 # recompute the gradient every `interval` inner steps
    lr_start: float = 0.003
    lr_end: float = 0.002
    guided_fraction: float = 0.2    # guided share of the denoising process (schedule.py), from its start
    reference_noise: str = "renoise"  # renoise: reference re-noised per guided step (released code); clean: once
    reference_seed: int = 0           # seed of the fixed reference noise
    reference_sigma_cap: float = 1.0  # the reference is re-noised to min(step sigma, cap): 1.0 reads it at the
                                      # generation's own noise level (docs/reference_noise.md)
    exit_block: int = -1              # -1: stop inside the motion block (early exit); N: run blocks up to N
                                      # (the released code truncates after 20); N past the last block: whole DiT
    keep_activations: str = "auto"    # gradient passes keep every block's activations instead of recomputing
                                      # them (faster, more memory); auto: when the estimate fits (memory.py)
    motion_strength: float = 1.0      # scales the reference motion the generation is guided to: 0 holds still,
                                      # above 1 exaggerates (motion_controls.py)
    transfer: str = "all"             # all: the whole motion; camera: only the global (camera) motion;
                                      # objects: only the motion left after the camera's (camera_motion.py)
    flow_definition: str = "paper"    # paper: the paper's equations (amf.py, losses.py); released: the authors'
                                      # code, quirks included (released_flow.py, docs/differences.md)

    def __post_init__(self):
        object.__setattr__(self, "tile", tuple(int(t) for t in self.tile))
        _choice("mode", self.mode, MODES)
        _choice("reference_noise", self.reference_noise, REFERENCE_NOISE_MODES)
        _choice("keep_activations", self.keep_activations, KEEP_ACTIVATIONS_MODES)
        _choice("transfer", self.transfer, TRANSFER_MODES)
        _choice("flow_definition", self.flow_definition, FLOW_DEFINITIONS)
        _int_range("motion_block", self.motion_block, 0, 10_000)
        _int_range("temporal_span", self.temporal_span, 1, 64)
        _int_range("window", self.window, 1, 512)
        if len(self.tile) != 2:
            raise ValueError(f"tile must be (rows, cols), got {self.tile!r}")
        _int_range("tile rows", self.tile[0], 1, 64)
        _int_range("tile cols", self.tile[1], 1, 64)
        _float_range("tau", self.tau, 1e-3, 100.0)
        _float_range("lambda_amf", self.lambda_amf, 0.0, 1e4)
        _float_range("lambda_window", self.lambda_window, 0.0, 1e4)
        _float_range("alpha", self.alpha, 0.0, 1.0)
        _int_range("inner_steps", self.inner_steps, 0, 1000)
        _int_range("interval", self.interval, 1, 1000)
        _float_range("lr_start", self.lr_start, 0.0, 1.0)
        _float_range("lr_end", self.lr_end, 0.0, 1.0)
        _float_range("guided_fraction", self.guided_fraction, 0.0, 1.0)
        _int_range("reference_seed", self.reference_seed, 0, 2**64 - 1)
        _float_range("reference_sigma_cap", self.reference_sigma_cap, 0.0, 1.0)
        _int_range("exit_block", self.exit_block, -1, 10_000)
        _float_range("motion_strength", self.motion_strength, 0.0, MAX_MOTION_STRENGTH)
        if self.lambda_amf == 0 and self.lambda_window == 0 and self.mode != "No_transfer":
            raise ValueError("lambda_amf and lambda_window are both 0: nothing to optimise; "
                             "set one above 0 or use mode 'No_transfer'")
        if self.flow_definition == "released":
            self._check_released()

    def _check_released(self) -> None:
        if self.mode == "AMF":
            raise ValueError("flow_definition 'released' has only the sliding-window flow (the released code "
                             "refuses mode AMF): use mode effi_AMF, or flow_definition 'paper' for the global flow")
        if self.motion_strength != 1.0 or self.transfer != "all":
            raise ValueError("motion_strength and transfer work with flow_definition 'paper' only (the released "
                             "code has no motion controls): set motion_strength 1 and transfer all, or use 'paper'")

    @property
    def guided(self) -> bool:
        return self.mode != "No_transfer" and self.inner_steps > 0 and self.guided_fraction > 0

    def check_exit_block(self) -> None:
        """exit_block and motion_block come from different nodes: checked once both are known."""
        if 0 <= self.exit_block < self.motion_block:
            raise ValueError(f"exit_block must be -1 (early exit) or at least motion_block ({self.motion_block}); "
                             f"got {self.exit_block}")

    @property
    def effective_interval(self) -> int:
        """'AMF' is the full method: every inner step recomputes the gradient."""
        return 1 if self.mode == "AMF" else self.interval

    def step_skip_inputs(self, **overrides) -> dict:
        """Step-Skip Settings node inputs (API format) for these settings, with ``overrides``."""
        unknown = sorted(set(overrides) - set(STEP_SKIP_FIELDS))
        if unknown:
            raise ValueError(f"not Step-Skip Settings inputs: {', '.join(unknown)}")
        return {**{name: getattr(self, name) for name in STEP_SKIP_FIELDS}, **overrides}

    def replace(self, **changes) -> "FastVMTSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["tile"] = list(self.tile)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "FastVMTSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown FastVMT setting(s): {', '.join(unknown)}")
        return cls(**data)


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _int_range(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}]; got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")


def _float_range(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [{lo}, {hi}]; got {value!r}")
    if not (lo <= float(value) <= hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}]; got {value}")
