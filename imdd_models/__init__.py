"""imdd_models: streaming data, diffusion and segmentation models trained on IMDD shards.

It reads only the shard format written by `imdd-build shard` (see README), never the build
workspace. `imdd_models.data` streams shards; `imdd_models.components` writes and loads the frozen
parts (VAE, CLIP text and image towers, tokenizer, scheduler) and the implicit captioner.
"""

import sys as _sys


_TRIGGERS = frozenset({"torch", "transformers", "diffusers", "datasets", "accelerate", "torchmetrics",
                       "lightning_utilities"})


class _BrokenTorchvisionGuard:
    """Runs `hide_broken_torchvision` when the first of torch, transformers, diffusers, datasets, accelerate or
    torchmetrics is imported (before any of them can look for torchvision), not at `import imdd_models`:
    importing torchvision imports torch, and `imdd-models --help` must not."""

    def find_spec(self, name, path=None, target=None):
        if name not in _TRIGGERS:
            return None
        _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
        from ._compat import hide_broken_torchvision
        if name != "torch":
            hide_broken_torchvision()  # imports torch and tries torchvision before `name` is loaded
            return None
        # torch itself: importing torchvision now would load torch inside this import of it; run after it
        import importlib.util
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_torch = spec.loader.exec_module

        def exec_module(module):
            exec_torch(module)
            hide_broken_torchvision()

        spec.loader.exec_module = exec_module
        return spec


if not any(isinstance(f, _BrokenTorchvisionGuard) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _BrokenTorchvisionGuard())
