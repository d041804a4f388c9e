"""Stage 1: latent precompute, diffusion training, generation and defect inpainting."""
