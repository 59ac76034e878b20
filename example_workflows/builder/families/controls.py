"""Motion controls: the main text-to-video graph with Step-Skip Settings' ``transfer`` on
``camera`` (the reference's camera motion only). Same columns as ``t2v``."""
from __future__ import annotations

from ..graph import Graph
from ..texts import note
from .t2v import finish, guidance_sampler, transfer_inputs


def wf_camera_only() -> Graph:
    g = Graph("fastvmt_wan21_t2v_camera_motion_only", "Camera motion only: Wan 2.1 1.3B",
              "The reference's camera motion (pan, zoom, roll) in a new video; its objects' motion is not copied.")
    n = transfer_inputs(g)
    n.settings.values["transfer"] = "camera"
    sampler = guidance_sampler(g, n)
    finish(g, n, [sampler], sampler, "video/fastvmt_camera", note("camera_only"), note_size=(340, 440))
    return g
