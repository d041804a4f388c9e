"""Component presets: `sd15` (the paper's shapes, frozen parts from pretrained weights) and `tiny`
(the same structure and factors, randomly initialised, small enough to train on a CPU in seconds).

Both keep the SD factors: an 8x VAE with four levels and 4 latent channels (scaling 0.18215), a CLIP
text tower with 77 tokens and the real CLIP tokenizer, a CLIP image tower with a 512-d projection, and
the SD scaled-linear DDPM schedule (T=1000, betas 0.00085..0.012).

`clip_text` is the shape of a *random* CLIP text tower with projection (`components --clip-text random`, for
tests); a pretrained image tower brings its own (writer.py).
"""

from __future__ import annotations

import copy

from imdd_build.errors import RunError

# SD's training schedule, set explicitly: a bare DDPMScheduler() has linear 1e-4..0.02 and clip_sample.
SD_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon", "clip_sample": False, "variance_type": "fixed_small", "steps_offset": 1,
    "timestep_spacing": "leading",
}

SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn", "cross_attention_dim": 768, "attention_head_dim": 8,
    "norm_num_groups": 32, "norm_eps": 1e-5, "act_fn": "silu", "flip_sin_to_cos": True, "freq_shift": 0,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "center_input_sample": False,
    "use_linear_projection": False, "transformer_layers_per_block": 1,
}

TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32, "attention_head_dim": 8,
    "norm_num_groups": 8,
}

TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [8, 16, 32, 32],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 64, "scaling_factor": 0.18215,
}

TINY_TEXT = {
    "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 77, "projection_dim": 32, "hidden_act": "quick_gelu",
    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
}

TINY_VISION = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "image_size": 32, "patch_size": 8, "projection_dim": 512, "hidden_act": "quick_gelu",
}

# `small`: the CPU real-data preset (issue 29 item 7): 128 px, a 3-level U-Net, a VAE wide enough that its
# stride-4/8 taps carry texture; stage 1 + stage 2 train in minutes on two cores (bench/seg_real.py).
SMALL_UNET = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 64, 128],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
    "attention_head_dim": 8, "norm_num_groups": 8,
}
SMALL_VAE = {**TINY_VAE, "block_out_channels": [16, 32, 64, 64], "sample_size": 128}

SD_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
}
CLIP_L14_TEXT = {**TINY_TEXT, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                 "num_attention_heads": 12, "projection_dim": 768}
# CLIP ViT-B/32's text tower (with its 512-d projection): the shape of a random `--clip-text random` tower for the
# sd15 shapes (the tiny one is TINY_TEXT with the image tower's projection width).
CLIP_B32_TEXT = {**TINY_TEXT, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "projection_dim": 512}
CLIP_B32_VISION = {**TINY_VISION, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "image_size": 224, "patch_size": 32}

PRESETS = {
    "tiny": {
        "resolution": 64,  # images are resized to this before VAE encoding (latents 8x8)
        "unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT, "image_encoder": TINY_VISION,
        "clip_text": TINY_TEXT, "image_size": 32,  # the image tower's input (feature extractor crop)
    },
    "small": {
        "resolution": 128, "unet": SMALL_UNET, "vae": SMALL_VAE, "text_encoder": TINY_TEXT,
        "image_encoder": TINY_VISION, "clip_text": TINY_TEXT, "image_size": 32,
    },
    # The sd15 shapes with random weights: throughput benchmarks on machines that cannot download.
    "sd15-random": {
        "resolution": 512, "unet": SD15_UNET, "vae": SD_VAE, "text_encoder": CLIP_L14_TEXT,
        "image_encoder": CLIP_B32_VISION, "clip_text": CLIP_B32_TEXT, "image_size": 224,
    },
    "sd15": {
        "resolution": 512, "unet": SD15_UNET, "image_size": 224,
        "vae": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "text_encoder": "openai/clip-vit-large-patch14",
        "image_encoder": "openai/clip-vit-base-patch32",
        "clip_text": CLIP_B32_TEXT,  # only for `--clip-text random`; by default the image tower's own CLIP text tower
    },
}


def get_preset(name: str) -> dict:
    """A deep copy of a preset; RunError naming the choices for an unknown one."""
    if name not in PRESETS:
        raise RunError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
