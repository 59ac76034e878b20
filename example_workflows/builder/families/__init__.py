"""The example workflows, one module per family; ``WORKFLOWS`` in the order they are built."""
from .controls import wf_camera_only
from .i2v import wf_i2v_wan21, wf_ti2v_5b
from .motion_files import wf_extract_save, wf_reuse
from .selftest import wf_selftest
from .t2v import wf_apply_motion, wf_guidance_sampler, wf_long_video, wf_uni_pc
from .two_experts import wf_i2v_two_experts, wf_two_experts

WORKFLOWS = [wf_guidance_sampler, wf_apply_motion, wf_extract_save, wf_reuse, wf_uni_pc, wf_two_experts,
             wf_i2v_two_experts, wf_ti2v_5b, wf_i2v_wan21, wf_selftest, wf_camera_only,
             wf_long_video]
