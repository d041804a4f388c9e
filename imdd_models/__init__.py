"""imdd_models: streaming data, diffusion and segmentation models trained on IMDD shards.

It reads only the shard format written by `imdd-build shard` (see README), never the build
workspace. `imdd_models.data` streams shards; `imdd_models.components` writes and loads the frozen
parts (VAE, CLIP text and image towers, tokenizer, scheduler) and the implicit captioner.

Importing it changes nothing process-wide: code that needs transformers/diffusers calls
`imdd_models._compat.hf_ready()` first (see there for the broken-torchvision case).
"""

from ._compat import hf_ready, hide_broken_torchvision  # noqa: F401  (hide_broken_torchvision: the old name)
