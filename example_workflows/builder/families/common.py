"""What the workflow families share: prompts, sizes, colours, the column grid and the
small node groups every workflow has (reference video, Extract Motion, prompts, output)."""
from __future__ import annotations

from ..assets import MODEL_FILES, REFERENCE_VIDEO
from ..graph import VIDEO_RESERVE, VIDEO_W, Graph, Node
from ..layout import Grid
from ..texts import note

POSITIVE = ("A red fox runs across a snowy meadow toward the camera, its breath visible in the cold air, "
            "soft morning light, cinematic, highly detailed.")
I2V_POSITIVE = ("The subject in the image moves naturally through the scene, following the motion of the "
                "reference clip, soft natural light, cinematic, highly detailed.")
NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
            "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
            "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
SIZE = dict(width=832, height=480, length=81)

PROMPT_COLOR = ("#232", "#353")
NEGATIVE_COLOR = ("#322", "#533")
MODELS_COLOR = "#3f789e"
REFERENCE_COLOR = "#8A8"
PROMPTS_COLOR = "#88A"
OUTPUT_COLOR = "#a1309b"

WAN21 = "Comfy-Org's repackaged Wan 2.1"
WAN22 = "Comfy-Org's repackaged Wan 2.2"

# The columns of the Wan workflows (text- and image-to-video), left to right:
#   A  loaders, Load CLIP, the Models note, Load Video
#   B  the model (or its shift), prompts, the latent or start image, reference prompt,
#      VAE / Get Video Components
#   C  the image-to-video latent, Step-Skip Settings, Extract Motion
#   D  the sampler(s) or Apply Motion, the guidance and reference notes
#   E  the two-expert samplers, or VAE Decode and Create Video;  F  Save Video
WAN_GRID = Grid.of(A=320, B=420, C=340, D=(340, 160), E=(340, 40), F=480)


def models_note(source: str, files, extra: str = "") -> str:
    """The Models note: where each of ``files`` goes (``extra`` after the first one)."""
    lines = [f"- models/{MODEL_FILES[f][0]}/{f}{extra if i == 0 else ''}" for i, f in enumerate(files)]
    return note("models", source=source, files="\n".join(lines))


def reference_video(g: Graph) -> Node:
    return g.add("LoadVideo", title="Reference Video", size=(VIDEO_W, 400), reserve=VIDEO_RESERVE,
                 file=REFERENCE_VIDEO)


def extract_motion(g: Graph, unet, comps, vae, ref_prompt, motion_block=14, size=None, clip_vision=None) -> Node:
    size = SIZE if size is None else size
    extra = {} if clip_vision is None else {"clip_vision": clip_vision}
    return g.add("FastVMTExtractMotion", model=unet, images=comps.out("images"), vae=vae, conditioning=ref_prompt,
                 motion_block=motion_block, **size, **extra)


def reference_prompt(g: Graph, clip, size=(420, 100)) -> Node:
    return g.add("CLIPTextEncode", title="Reference Prompt (empty)", size=size, clip=clip, text="")


def positive_prompt(g: Graph, clip, text, title="Positive Prompt", size=(420, 180)) -> Node:
    return g.add("CLIPTextEncode", title=title, size=size, color=PROMPT_COLOR, clip=clip, text=text)


def negative_prompt(g: Graph, clip, size=(420, 180)) -> Node:
    return g.add("CLIPTextEncode", title="Negative Prompt", size=size, color=NEGATIVE_COLOR, clip=clip, text=NEGATIVE)


def video_output(g: Graph, latent, vae, fps, prefix) -> tuple:
    """VAE Decode, Create Video and Save Video."""
    decode = g.add("VAEDecode", samples=latent, vae=vae)
    create = g.add("CreateVideo", images=decode, fps=fps)
    save = g.add("SaveVideo", size=(480, 420), video=create, filename_prefix=prefix, format="auto", codec="auto")
    return decode, create, save
