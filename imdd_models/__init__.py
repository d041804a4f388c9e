"""imdd_models: streaming data, diffusion and segmentation models trained on IMDD shards.

It reads only the shard format written by `imdd-build shard` (see README), never the build
workspace. `imdd_models.data` streams shards; `imdd_models.components` writes and loads the frozen
parts (VAE, CLIP text and image towers, tokenizer, scheduler) and the implicit captioner.
"""

import sys as _sys


class _BrokenTorchvisionGuard:
    """Runs `hide_broken_torchvision` just before transformers, diffusers, torchmetrics or torchvision is first
    imported, not at `import imdd_models`: importing torchvision imports torch, and `imdd-models --help` must
    not. A torchvision it hides then fails to import as an absent one does (ModuleNotFoundError)."""

    def find_spec(self, name, path=None, target=None):
        if name in ("transformers", "diffusers", "torchmetrics", "torchvision"):
            _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
            from ._compat import hide_broken_torchvision
            if hide_broken_torchvision() and name == "torchvision":
                raise ModuleNotFoundError("No module named 'torchvision' (hidden: it cannot load beside this "
                                          "torch)", name=name)
        return None


if not any(isinstance(f, _BrokenTorchvisionGuard) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _BrokenTorchvisionGuard())
