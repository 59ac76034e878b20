"""The Wan DiT's geometry, read from the loaded model, and the latent's token grid."""

from __future__ import annotations

from dataclasses import dataclass

from .comfy_compat import is_wan22, is_wan_model


@dataclass(frozen=True)
class WanGeometry:
    model_class: str
    num_blocks: int
    dim: int
    num_heads: int
    head_dim: int
    latent_channels: int
    patch_size: tuple[int, int, int]
    image_to_video: str | None = None   # None (text-to-video), "concat" or "first_frame" (image_to_video_kind)
    image_branch: bool = False          # the DiT embeds CLIP-vision tokens (Wan 2.1 I2V's img_emb)

    def to_dict(self) -> dict:
        return {"model_class": self.model_class, "num_blocks": self.num_blocks, "dim": self.dim,
                "num_heads": self.num_heads, "latent_channels": self.latent_channels}


def wan_geometry(model_patcher, input_name: str = "model") -> WanGeometry:
    """Read the DiT's geometry from the loaded model; a clear error if it is not a Wan DiT."""
    base = getattr(model_patcher, "model", None)
    dm = getattr(base, "diffusion_model", None)
    if not is_wan_model(dm):
        got = type(dm).__name__ if dm is not None else type(model_patcher).__name__
        raise ValueError(f"{input_name}: FastVMT needs a Wan video DiT (Wan 2.1 / 2.2, loaded with 'Load Diffusion "
                         f"Model'); this model's DiT is {got}. Connect a Wan model.")
    channels = base.latent_format.latent_channels
    return WanGeometry(type(dm).__name__, len(dm.blocks), dm.dim, dm.num_heads, dm.dim // dm.num_heads,
                       channels, tuple(dm.patch_size), image_to_video_kind(base),
                       getattr(dm, "img_emb", None) is not None)


def image_to_video_kind(base_model) -> str | None:
    """How this Wan model takes a start image. "concat": the image latent and a 4-channel
    mask are concatenated to the input (in_dim = 2 x channels + 4: Wan 2.1 I2V, Wan 2.2 14B
    I2V). "first_frame": ComfyUI's WAN22 model (Wan 2.2 TI2V 5B) holds the image latent in
    the sampled latent under a noise mask and gives it timestep 0. None: text-to-video."""
    channels = base_model.latent_format.latent_channels
    # .shape, not weight.shape[1] of a dequantised copy: GGUF tensors report their logical shape
    in_dim = base_model.diffusion_model.patch_embedding.weight.shape[1]
    if in_dim == 2 * channels + 4:
        return "concat"
    if is_wan22(base_model):
        return "first_frame"
    return None


def pixels_per_latent(geometry: WanGeometry) -> int:
    """Video pixels per latent pixel of this model's VAE: the Wan 2.2 VAE (48 channels, the
    5B model) compresses 16x, the Wan 2.1 VAE 8x (as Wan22ImageToVideoLatent and
    EmptyHunyuanLatentVideo size their latents). Frames: 1 + 4 per latent frame after the first."""
    return 16 if geometry.latent_channels == 48 else 8


def token_grid(latent_shape, patch_size) -> tuple[int, int, int]:
    _, _, f, h, w = latent_shape
    pt, ph, pw = patch_size
    return -(-f // pt), -(-h // ph), -(-w // pw)
