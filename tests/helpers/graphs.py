"""Host-test graphs, built with ComfyUI's GraphBuilder, and what tests read back from a run.

Node ids are the names tests refer to ("model", "motion", "sample", ...). ComfyUI's
``comfy_execution`` is importable once the ``comfy`` fixture has booted the host, so the
builder is imported when a graph is built, not at import time."""

from fastvmt_core import FastVMTSettings

# Reference and generation: 3 latent frames (9 video frames) of 8x12 latent pixels -> 3 x 4 x 6 tokens.
FRAMES, LAT_H, LAT_W = 3, 8, 12
BLOCK = 3
GUIDED = {"inner_steps": 4, "lr_start": 0.05, "lr_end": 0.05}
LORA_STRENGTH = 0.8


def builder():
    """An empty GraphBuilder that uses node ids as given (no prefix)."""
    from comfy_execution.graph_utils import GraphBuilder
    return GraphBuilder(prefix="")


def settings_inputs(**overrides):
    """Step-Skip Settings inputs: the dataclass defaults with ``overrides``."""
    return FastVMTSettings().step_skip_inputs(**overrides)


def latent_video_size(channels, frames, lat_h=LAT_H, lat_w=LAT_W):
    """Extract Motion's width / height / length for a latent of this size: pixels x 8 (x 16
    for the Wan 2.2 VAE's 48 channels), 1 + 4 video frames per latent frame after the first."""
    scale = 16 if channels == 48 else 8
    return {"width": lat_w * scale, "height": lat_h * scale, "length": (frames - 1) * 4 + 1}


def base_builder(model, *, channels=16, block=BLOCK, frames=FRAMES, settings=None, sampler="euler", steps=5,
                 denoise=1.0, ref_frames=None):
    """UNETLoader + test conditioning + reference latent + Extract Motion + Guidance Sampler
    (+ Step-Skip Settings when ``settings`` is given) + Inspect, as a GraphBuilder to extend."""
    g = builder()
    unet = g.node("UNETLoader", "model", unet_name=model, weight_dtype="default")
    pos = g.node("FastVMTTestConditioning", "pos", seed=1, tokens=8, text="a red fox")
    neg = g.node("FastVMTTestConditioning", "neg", seed=2, tokens=8, text="blurry")
    ref = g.node("FastVMTTestLatent", "ref", seed=3, channels=channels, frames=ref_frames or frames, height=LAT_H,
                 width=LAT_W)
    empty = g.node("FastVMTTestLatent", "empty", seed=4, channels=channels, frames=frames, height=LAT_H, width=LAT_W,
                   scale=0.0)
    motion = g.node("FastVMTExtractMotion", "motion", model=unet.out(0), latent=ref.out(0),
                    **latent_video_size(channels, ref_frames or frames), motion_block=block, temporal_span=5,
                    window=21, tile_rows=3, tile_cols=4, tau=1.0)
    sample = g.node("FastVMTGuidanceSampler", "sample", model=unet.out(0), seed=7, steps=steps, cfg=1.0,
                    sampler_name=sampler, scheduler="simple", positive=pos.out(0), negative=neg.out(0),
                    latent_image=empty.out(0), denoise=denoise, motion=motion.out(0))
    g.node("FastVMTTestInspect", "out", value=sample.out(0))
    if settings is not None:
        sample.set_input("settings", g.node("FastVMTStepSkipSettings", "settings",
                                            **settings_inputs(**settings)).out(0))
    return g


def base_graph(model, **kw):
    """``base_builder``'s graph, finalized (node ids as above)."""
    return base_builder(model, **kw).finalize()


def motion_from_images(g, images, vae):
    """Extract Motion of ``base_builder`` takes the frames of node ``images`` through ``vae``
    (a VAELoader node) instead of the latent, at the generation's size (9 frames)."""
    motion = g.lookup_node("motion")
    motion.set_input("latent", None)
    for name, value in {"images": images.out(0), "vae": vae.out(0), "width": LAT_W * 8, "height": LAT_H * 8,
                        "length": 9}.items():
        motion.set_input(name, value)
    return motion


def inspect(g, node, node_id=None):
    """A FastVMT Test Inspect output node on ``node``'s first output (id "out_<node id>")."""
    return g.node("FastVMTTestInspect", node_id or f"out_{node.id}", value=node.out(0))


def node_outputs(run_graph, g, names) -> dict:
    """The values of the named nodes of base_builder's graph ``g``: each is shown to an
    inspect node, so it runs; the sampler and its output are taken out."""
    for node in ("out", "sample", "neg"):
        g.remove_node(node)
    for name in names:
        inspect(g, g.lookup_node(name), f"show_{name}")
    r = run_graph(g.finalize()).raise_for_error()
    return {name: r.output(name, 0) for name in names}


def ksampler_like(g, node_id, sample, **inputs):
    """A stock KSampler with the inputs of the Guidance Sampler node ``sample`` less motion and
    settings, ``inputs`` replacing some of them."""
    same = {k: v for k, v in sample.inputs.items() if k not in ("motion", "settings")}
    return g.node("KSampler", node_id, **{**same, **inputs})


def replace_node(g, node_id, class_type, **inputs):
    """Node ``node_id`` becomes a ``class_type`` node with ``inputs``; its id, its place in the
    graph and the links to it stay."""
    node = g.lookup_node(node_id)
    node.class_type, node.inputs = class_type, dict(inputs)
    return node


def lora_graph(model_name, lora_name, settings=GUIDED):
    """``base_graph`` with LoraLoaderModelOnly (at LORA_STRENGTH) between the loader and both
    Extract Motion and the Guidance Sampler."""
    g = base_builder(model_name, settings=settings)
    lora = g.node("LoraLoaderModelOnly", "lora", model=g.lookup_node("model").out(0), lora_name=lora_name,
                  strength_model=LORA_STRENGTH)
    for node in ("motion", "sample"):
        g.lookup_node(node).set_input("model", lora.out(0))
    return g.finalize()


def plain_graph(model):
    """Plain sampling on the base graph's loader and conditioning: KSampler "plain" (seed 11,
    4 steps, cfg 3), no FastVMT node."""
    g = base_builder(model)
    for node in ("sample", "out", "motion", "ref"):
        g.remove_node(node)
    plain = g.node("KSampler", "plain", model=g.lookup_node("model").out(0), seed=11, steps=4, cfg=3.0,
                   sampler_name="euler", scheduler="simple", positive=g.lookup_node("pos").out(0),
                   negative=g.lookup_node("neg").out(0), latent_image=g.lookup_node("empty").out(0), denoise=1.0)
    inspect(g, plain)
    return g.finalize()


def report(result, node="sample"):
    """The Guidance Sampler's run report (its ``fastvmt_report`` UI output)."""
    return result.ui_output(node)["fastvmt_report"][0]


def samples(result, node="sample"):
    """The sampled latent tensor of a sampler node."""
    return result.output(node, 0)["samples"]
