"""The files the workflows name: model files with their download links (the frontend's
missing-models dialog shows them) and the user's reference clip and start image."""
from __future__ import annotations

HF = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
WAN_T2V_13B = "wan2.1_t2v_1.3B_fp16.safetensors"
UMT5 = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
WAN_VAE = "wan_2.1_vae.safetensors"
HF22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
WAN22_T2V_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_T2V_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
WAN22_I2V_HIGH = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
WAN22_I2V_LOW = "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
WAN22_TI2V_5B = "wan2.2_ti2v_5B_fp16.safetensors"
WAN22_VAE = "wan2.2_vae.safetensors"
WAN21_I2V_480P = "wan2.1_i2v_480p_14B_fp16.safetensors"
CLIP_VISION_H = "clip_vision_h.safetensors"
MODEL_FILES = {  # name -> (models/ folder, download url); shown by the frontend's missing-models dialog
    WAN_T2V_13B: ("diffusion_models", f"{HF}/diffusion_models/{WAN_T2V_13B}"),
    UMT5: ("text_encoders", f"{HF}/text_encoders/{UMT5}"),
    WAN_VAE: ("vae", f"{HF}/vae/{WAN_VAE}"),
    WAN22_T2V_HIGH: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_T2V_HIGH}"),
    WAN22_T2V_LOW: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_T2V_LOW}"),
    WAN22_I2V_HIGH: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_I2V_HIGH}"),
    WAN22_I2V_LOW: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_I2V_LOW}"),
    WAN22_TI2V_5B: ("diffusion_models", f"{HF22}/diffusion_models/{WAN22_TI2V_5B}"),
    WAN22_VAE: ("vae", f"{HF22}/vae/{WAN22_VAE}"),
    WAN21_I2V_480P: ("diffusion_models", f"{HF}/diffusion_models/{WAN21_I2V_480P}"),
    CLIP_VISION_H: ("clip_vision", f"{HF}/clip_vision/{CLIP_VISION_H}"),
}

REFERENCE_VIDEO = "reference.mp4"
START_IMAGE = "start_image.png"
SELFTEST_VIDEO = "fastvmt_selftest_reference.mp4"   # shipped in example_workflows/input/
# What Load Motion lists for the save workflow's first file (output/fastvmt/motion_00001_.safetensors):
# the [output] annotation loads it from the output folder, so the reuse workflow runs after it as it is.
SAVED_MOTION = "fastvmt/motion_00001_.safetensors [output]"
