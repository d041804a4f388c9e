"""imdd_models: streaming data, diffusion and segmentation models trained on IMDD shards.

It reads only the shard format written by `imdd-build shard` (see README), never the build
workspace. `imdd_models.data` streams shards; `imdd_models.components` writes and loads the frozen
parts (VAE, CLIP text and image towers, tokenizer, scheduler) and the implicit captioner.
"""

from ._compat import hide_broken_torchvision

hide_broken_torchvision()
