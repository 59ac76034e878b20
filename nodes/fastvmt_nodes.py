"""The FastVMT nodes: thin adapters that validate inputs, call the core through
``nodes/wan`` and report what they did."""

from __future__ import annotations

import logging
import os
import re

import torch
from comfy_api.latest import io, ui

import comfy.samplers
import comfy.utils
import folder_paths
import nodes as comfy_nodes

from .fidelity_node import MotionFidelity
from .settings_node import CATEGORY, DEFAULTS, Settings, StepSkipSettings, settings_or_error
from .motion import MotionReference, ReferenceImage, read_motion_file, write_motion_file
from .wan.apply import apply_fastvmt
from .wan.checks import (check_block_index, check_latent_size, check_masked_latent, check_motion_matches,
                         check_start_image)
from .wan.geometry import wan_geometry

log = logging.getLogger("FastVMT")

Motion = io.Custom("FASTVMT_MOTION")
MOTION_SUBFOLDER = "fastvmt"


def _check_finite(tensor: torch.Tensor, name: str):
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name}: contains NaN or infinite values; check the node that produced it")


def _prepare_frames(images: torch.Tensor, width: int, height: int, length: int):
    """Cut to a 4k+1 frame count and resize + centre-crop to width x height; report the choices."""
    n, h0, w0 = images.shape[0], images.shape[1], images.shape[2]
    use = min(length, n)
    use = (use - 1) // 4 * 4 + 1  # Wan's VAE packs frames as 1 + 4k
    frames = images[:use, :, :, :3]
    notes = [f"reference: {n} frames of {w0}x{h0}"]
    if use < n:
        notes.append(f"used the first {use} (length {length}, rounded to 4k+1)")
    elif use < length:
        notes.append(f"only {n} frames available: used {use} (4k+1) instead of {length}")
    if (w0, h0) != (width, height):
        frames = comfy.utils.common_upscale(frames.movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
        notes.append(f"resized and centre-cropped to {width}x{height}")
    return frames, ", ".join(notes)


def reference_image(geometry, ref_latent: torch.Tensor, frames, vae, clip_vision) -> ReferenceImage | None:
    """The reference's own first frame as the image-to-video conditioning of its pass,
    built the way WanImageToVideo (concat models) or Wan22ImageToVideoLatent (TI2V) build
    the generation's from the start image. None for text-to-video models."""
    kind = geometry.image_to_video
    if kind is None:
        return None
    _, _, f, h, w = ref_latent.shape
    mask = torch.ones((1, 1, f, h, w))
    mask[:, :, :1] = 0.0  # one start frame: the first latent frame
    if kind == "first_frame":
        return ReferenceImage("first_frame", mask)
    start = torch.full_like(frames, 0.5)  # the first frame, then grey, as WanImageToVideo encodes it
    start[:1] = frames[:1]
    concat = vae.encode(start).float().cpu()
    _check_finite(concat, "vae output")
    tokens = None
    if geometry.image_branch:  # crop "none", as in ComfyUI's Wan 2.1 image-to-video template
        tokens = clip_vision.encode_image(frames[:1], crop=False).penultimate_hidden_states.float().cpu()
        _check_finite(tokens, "clip_vision output")
    return ReferenceImage("concat", mask, concat, tokens)


class ExtractMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTExtractMotion",
            display_name="Extract Motion (Sliding Window)",
            category=CATEGORY,
            description="Prepares a reference clip for FastVMT motion transfer: encodes it (or takes an encoded "
                        "latent) and records how its motion flow is read from the Wan DiT. The flow itself is "
                        "computed inside the sampler, at each guided step. With an image-to-video model it also "
                        "prepares the reference's own first frame as the image conditioning of the reference pass.",
            inputs=[
                io.Model.Input("model", tooltip="The Wan model you will sample with (from 'Load Diffusion Model'). "
                               "Used to check the motion block and latent channels."),
                io.Image.Input("images", optional=True, tooltip="Reference video frames (e.g. from Load Video -> "
                               "Get Video Components). Needs 'vae'. Leave empty when 'latent' is connected."),
                io.Vae.Input("vae", optional=True, tooltip="The Wan VAE (wan_2.1_vae.safetensors) that encodes "
                             "'images'."),
                io.Latent.Input("latent", optional=True, tooltip="An already encoded reference latent, instead of "
                                "images + vae, used as it is: width / height / length must be its size (latent pixels "
                                "x 8, x 16 with the Wan 2.2 VAE; 4 x (latent frames - 1) + 1 frames), the size you "
                                "generate."),
                io.Conditioning.Input("conditioning", optional=True, tooltip="Conditioning for the reference pass. "
                                      "The paper uses the empty prompt (connect a CLIP Text Encode with empty "
                                      "text). When not connected, the generation's positive prompt is used."),
                io.Int.Input("width", default=832, min=16, max=comfy_nodes.MAX_RESOLUTION, step=16,
                             tooltip="Width the reference frames are resized and centre-cropped to. Must equal "
                                     "the generated video's width. Default 832 (Wan 2.1 480p)."),
                io.Int.Input("height", default=480, min=16, max=comfy_nodes.MAX_RESOLUTION, step=16,
                             tooltip="Height of the reference frames after resize + centre crop; must equal the "
                                     "generated video's height. Default 480."),
                io.Int.Input("length", default=81, min=1, max=comfy_nodes.MAX_RESOLUTION, step=4,
                             tooltip="Frames taken from the reference (rounded down to 4k+1, fewer if the clip "
                                     "is shorter). Must equal the generated length. Default 81."),
                io.Int.Input("motion_block", default=DEFAULTS.motion_block, min=0, max=99,
                             tooltip="DiT block whose self-attention queries/keys carry the motion. Default 14 "
                                     "(the 15th of 30 in Wan 2.1 1.3B, best in the paper's ablation)."),
                io.Int.Input("temporal_span", default=DEFAULTS.temporal_span, min=1, max=64,
                             tooltip="Frame offsets compared: each latent frame against the next 'span' frames "
                                     "(paper s_f = 5). Cost grows linearly with it."),
                io.Int.Input("window", default=DEFAULTS.window, min=1, max=255,
                             tooltip="Side of the local search window in tokens (paper l = 21). Larger follows "
                                     "faster motion at more cost."),
                io.Int.Input("tile_rows", default=DEFAULTS.tile[0], min=1, max=64,
                             tooltip="Tokens per tile vertically; a tile shares one window (paper: 3)."),
                io.Int.Input("tile_cols", default=DEFAULTS.tile[1], min=1, max=64,
                             tooltip="Tokens per tile horizontally (paper: 4)."),
                io.Float.Input("tau", default=DEFAULTS.tau, min=0.001, max=100.0, step=0.01,
                               tooltip="Attention temperature of the motion flow; lower is sharper. Default 1.0."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Image-to-video with Wan 2.1 I2V only: the CLIP vision model "
                                            "(clip_vision_h.safetensors, Load CLIP Vision) that encodes the start "
                                            "image. It encodes the reference's first frame, so the reference pass "
                                            "is conditioned like the generation."),
            ],
            outputs=[Motion.Output("motion", tooltip="Reference motion for FastVMT Guidance Sampler, Apply "
                                   "FastVMT Motion or Save Motion.")],
        )

    @classmethod
    def execute(cls, model, width, height, length, motion_block, temporal_span, window, tile_rows, tile_cols, tau,
                images=None, vae=None, latent=None, conditioning=None, clip_vision=None) -> io.NodeOutput:
        geometry = wan_geometry(model)
        settings = settings_or_error(motion_block=motion_block, temporal_span=temporal_span, window=window,
                                      tile=(tile_rows, tile_cols), tau=tau)
        check_block_index(geometry, motion_block)
        if latent is not None and images is not None:
            raise ValueError("images / latent: connect either reference images (with vae) or an encoded latent, "
                             "not both")
        if geometry.image_to_video == "concat":
            needs = [name for name, value in (("images", images), ("vae", vae)) if value is None]
            if geometry.image_branch and clip_vision is None:
                needs.append("clip_vision")
            if needs:
                raise ValueError(f"{' / '.join(needs)}: this is a Wan image-to-video model; its reference pass is "
                                 "conditioned on the reference's first frame the way the generation is conditioned "
                                 "on the start image, so connect the reference frames to 'images', the Wan VAE to "
                                 "'vae'" + (" and the CLIP vision model (clip_vision_h.safetensors) to "
                                            "'clip_vision'" if geometry.image_branch else "")
                                 + (" instead of an encoded latent" if latent is not None else ""))
        frames = None
        if latent is not None:
            samples = latent["samples"]
            if samples.ndim != 5 or samples.shape[0] < 1 or samples.shape[2] < 1:
                raise ValueError(f"latent: expected a video latent [batch, channels, frames, height, width], got "
                                 f"shape {tuple(samples.shape)}")
            _check_finite(samples, "latent")
            ref = samples[:1].float().cpu()
            source = f"reference: encoded latent {tuple(ref.shape)}"
        elif images is not None:
            if vae is None:
                raise ValueError("vae: connect the Wan VAE to encode 'images', or connect an encoded 'latent'")
            if images.ndim != 4 or images.shape[0] == 0:
                raise ValueError(f"images: the reference has no frames (shape {tuple(images.shape)})")
            if (length - 1) % 4:
                raise ValueError(f"length: {length} is not 4k+1 (1, 5, ..., 81); Wan encodes 1 + 4k frames")
            _check_finite(images, "images")
            frames, source = _prepare_frames(images, width, height, length)
            ref = vae.encode(frames).float().cpu()
            _check_finite(ref, "vae output")
        else:
            raise ValueError("images / latent: connect the reference video frames (with vae) or an encoded latent")
        if ref.shape[1] != geometry.latent_channels:
            raise ValueError(f"latent: the reference latent has {ref.shape[1]} channels but this model uses "
                             f"{geometry.latent_channels}; use the VAE that matches the model "
                             "(Wan 2.1 VAE: 16 channels, Wan 2.2 VAE: 48)")
        if latent is not None:
            check_latent_size(geometry, ref.shape, width, height, length)
        image = reference_image(geometry, ref, frames, vae, clip_vision)
        if clip_vision is not None and not geometry.image_branch:
            source += "; clip_vision not used (this model has no CLIP-vision image branch)"
        motion = MotionReference(latent=ref, settings=settings, conditioning=conditioning,
                                 geometry=geometry.to_dict(), source=source, image=image)
        text = motion.summary()
        log.info("%s", text)
        return io.NodeOutput(motion, ui=ui.PreviewText(text))


def _motion_inputs():
    return [
        Motion.Input("motion", tooltip="From Extract Motion (Sliding Window) or Load Motion."),
        Settings.Input("settings", optional=True, tooltip="From Step-Skip Settings; the paper's defaults when "
                       "not connected (effi_AMF, interval 3, 10 inner steps, first 20% of steps guided)."),
        io.Mask.Input("reference_mask", optional=True,
                      tooltip="Optional region of the REFERENCE whose motion counts (white = counts), e.g. one "
                              "person, or the background to read the camera from. One mask for the whole clip, one "
                              "per video frame or one per latent frame; any size of the video's aspect (another "
                              "aspect is centre-cropped, as Extract Motion crops the frames, and the summary says "
                              "so). Not connected: the whole frame."),
        io.Mask.Input("generation_mask", optional=True,
                      tooltip="Optional region of the GENERATED video where the motion is transferred (white = "
                              "guided): the loss applies there and guidance changes the latent only there. Same "
                              "forms as reference_mask. Motion is compared at the same place in both clips, so "
                              "with transfer all / objects the two regions must overlap."),
    ]


class ApplyMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTApplyMotion",
            display_name="Apply FastVMT Motion",
            category=CATEGORY,
            description="Returns a copy of the model whose sampling transfers the reference motion, for the stock "
                        "KSampler, KSamplerAdvanced and SamplerCustomAdvanced. The input model is not changed.",
            inputs=[io.Model.Input("model", tooltip="The Wan model to guide.")] + _motion_inputs(),
            outputs=[io.Model.Output("patched_model", display_name="model", tooltip="The model with FastVMT guidance attached.")],
        )

    @classmethod
    def execute(cls, model, motion, settings=None, reference_mask=None, generation_mask=None) -> io.NodeOutput:
        patched, _ = apply_fastvmt(model, motion, settings, masks=(reference_mask, generation_mask))
        return io.NodeOutput(patched)


class GuidanceSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTGuidanceSampler",
            display_name="FastVMT Guidance Sampler",
            category=CATEGORY,
            description="A KSampler that transfers the reference motion: during the first guided steps it "
                        "optimises the latent so its attention motion flow matches the reference, then denoises "
                        "as usual. With mode No_transfer it is the stock KSampler.",
            inputs=[
                io.Model.Input("model", tooltip="The Wan model (the same one given to Extract Motion)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the initial noise."),
                io.Int.Input("steps", default=50, min=1, max=10000,
                             tooltip="Denoising steps (paper: 50). The first 'guided_fraction' of the process is "
                                     "guided (10 of 50 steps at 0.2)."),
                io.Float.Input("cfg", default=6.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale of the denoising steps (guidance passes use "
                                       "the positive prompt only, as in the paper)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="Sampler. The paper uses flow-matching Euler; every sampler of this list "
                                       "works. Ancestral/SDE samplers keep one noise stream; multistep ones "
                                       "restart their history after each guided step; uni_pc takes its guided "
                                       "steps with Euler (docs/samplers.md)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="Noise schedule. 'simple' follows the model's shifted flow schedule."),
                io.Conditioning.Input("positive", tooltip="The new prompt."),
                io.Conditioning.Input("negative", tooltip="The negative prompt."),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (an empty Wan video latent of the "
                                "reference's size, or the encoded reference for video-to-video with denoise < 1)."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Denoising strength; the released example uses 0.75 on the encoded "
                                       "reference."),
            ] + _motion_inputs(),
            outputs=[io.Latent.Output("LATENT")],
        )

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, denoise,
                motion, settings=None, reference_mask=None, generation_mask=None) -> io.NodeOutput:
        report = {}
        patched, resolved = apply_fastvmt(model, motion, settings, report=report,
                                          masks=(reference_mask, generation_mask))
        if resolved.guided:  # fail before sampling starts, naming the inputs
            geometry = wan_geometry(model)
            check_motion_matches(motion, geometry, latent_image["samples"].shape, "motion / latent_image")
            check_start_image(geometry, positive)
            if latent_image.get("noise_mask") is not None:
                check_masked_latent(motion, geometry, "motion / latent_image")
        (out,) = comfy_nodes.common_ksampler(patched, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                             latent_image, denoise=denoise)
        text = report.get("text", f"FastVMT {resolved.mode}: no guided steps; plain sampling")
        if not resolved.guided and (reference_mask is not None or generation_mask is not None):
            text += " (reference_mask / generation_mask not used)"
        stats = {k: v for k, v in report.items() if k != "text"}
        return io.NodeOutput(out, ui={"text": [text], "fastvmt_report": [stats]})


class SaveMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTSaveMotion",
            display_name="Save Motion",
            category=CATEGORY,
            description="Saves a motion as .safetensors in ComfyUI's output folder, so it is extracted once and "
                        "reused or shared. Files under output/fastvmt/ appear in Load Motion right away (marked "
                        "[output]). Never overwrites: the counter moves past existing files.",
            inputs=[
                Motion.Input("motion", tooltip="The motion to save."),
                io.String.Input("filename_prefix", default=f"{MOTION_SUBFOLDER}/motion",
                                tooltip="File name prefix under the output folder; a counter is appended "
                                        "(fastvmt/motion -> output/fastvmt/motion_00001_.safetensors). It must "
                                        "stay inside the output folder."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, motion, filename_prefix) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        subfolder, name = _split_prefix(filename_prefix)
        full_dir = os.path.join(out_dir, subfolder)
        os.makedirs(full_dir, exist_ok=True)
        pattern = re.compile(rf"^{re.escape(name)}_(\d+)_\.safetensors$")
        counter = 1 + max((int(m.group(1)) for f in os.listdir(full_dir) if (m := pattern.match(f))), default=0)
        while True:  # exclusive create: a file that appeared meanwhile is never replaced
            filename = f"{name}_{counter:05}_.safetensors"
            try:
                write_motion_file(motion, os.path.join(full_dir, filename))
                break
            except FileExistsError:
                counter += 1
        rel = "/".join(p for p in (subfolder, filename) if p)
        listed = subfolder == MOTION_SUBFOLDER or subfolder.startswith(MOTION_SUBFOLDER + "/")
        text = f"saved output/{rel}" + ("" if listed else f" (Load Motion lists input/ and output/{MOTION_SUBFOLDER}/; "
                                                      "copy the file into input/ to load it)")
        log.info("FastVMT: %s", text)
        return io.NodeOutput(ui={"fastvmt_motion": [{"filename": filename, "subfolder": subfolder, "type": "output"}],
                                 "text": [text]})


def _split_prefix(prefix: str) -> tuple[str, str]:
    """(subfolder, file name stem) of a Save Motion prefix, refused if it leaves the output folder."""
    parts = prefix.replace("\\", "/").split("/")
    if (not prefix.strip() or prefix.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", prefix)
            or any(p in ("..", ".") for p in parts)):
        raise ValueError(f"filename_prefix: {prefix!r} must be a relative name inside ComfyUI's output folder, "
                         f"without '..' or a drive (for example '{MOTION_SUBFOLDER}/motion')")
    *folders, name = [p for p in parts[:-1] if p] + [parts[-1]]
    return "/".join(folders), (name or "motion")


OUTPUT_TAG = " [output]"


def motion_files() -> list[str]:
    """Every name Load Motion accepts: .safetensors files under input/, and under
    output/fastvmt/ with ComfyUI's [output] annotation (saved motions, no copying)."""
    found = []
    for root, prefix, tag in ((folder_paths.get_input_directory(), "", ""),
                              (os.path.join(folder_paths.get_output_directory(), MOTION_SUBFOLDER),
                               MOTION_SUBFOLDER + "/", OUTPUT_TAG)):
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(".safetensors"):
                    rel = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
                    found.append(prefix + rel + tag)
    return sorted(found)


def _unlisted(motion_file) -> str:
    # One text whatever the name: it must not tell whether a path outside the folders exists.
    return (f"motion_file: {motion_file!r} is not one of the motion files Load Motion lists (input/ and "
            f"output/{MOTION_SUBFOLDER}/); pick one from the list (press R to refresh it) or upload the file into "
            "ComfyUI's input folder")


def resolve_motion_file(motion_file: str) -> str:
    """The path of a listed motion file; any other name is refused before a file is touched."""
    if not isinstance(motion_file, str) or motion_file not in motion_files():
        raise ValueError(_unlisted(motion_file))
    if motion_file.endswith(OUTPUT_TAG):
        return os.path.join(folder_paths.get_output_directory(), motion_file[:-len(OUTPUT_TAG)])
    return os.path.join(folder_paths.get_input_directory(), motion_file)


class LoadMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="FastVMTLoadMotion",
            display_name="Load Motion",
            category=CATEGORY,
            description="Loads a motion saved by Save Motion: from ComfyUI's input folder (uploaded or copied "
                        "files) or from output/fastvmt/ (entries marked [output]).",
            inputs=[io.Combo.Input("motion_file", options=motion_files(),
                                   tooltip="A motion file from the input folder, or one saved into output/fastvmt/ "
                                           "(marked [output]). Press R to refresh the list after saving.")],
            outputs=[Motion.Output("motion")],
        )

    @classmethod
    def execute(cls, motion_file) -> io.NodeOutput:
        motion = read_motion_file(resolve_motion_file(motion_file), motion_file)
        return io.NodeOutput(motion, ui=ui.PreviewText(motion.summary()))

    @classmethod
    def fingerprint_inputs(cls, motion_file):
        try:
            return os.path.getmtime(resolve_motion_file(motion_file))
        except (ValueError, OSError):
            return ""

    @classmethod
    def validate_inputs(cls, motion_file):
        # Replaces ComfyUI's combo check for this input, so it does the same check.
        return True if motion_file in motion_files() else _unlisted(motion_file)


NODE_LIST = [ExtractMotion, StepSkipSettings, GuidanceSampler, ApplyMotion, SaveMotion, LoadMotion, MotionFidelity]
