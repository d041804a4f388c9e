"""Import-time guard for a torchvision that cannot load beside the installed torch.

PyPI's torchvision wheel is built against the CUDA torch; beside a CPU torch build its compiled ops
fail to load ("operator torchvision::nms does not exist"), and transformers/diffusers then fail to
import their CLIP image processor and the Stable Diffusion pipeline. Neither needs torchvision
(transformers has a PIL backend), so when torchvision does not import we hide it from them.
"""

from __future__ import annotations

import sys

_checked = False


def hide_broken_torchvision() -> bool:
    """Make a torchvision that fails to import look absent; True when it had to. Call before transformers."""
    global _checked
    if _checked:
        return sys.modules.get("torchvision", 0) is None
    _checked = True
    if "transformers" in sys.modules or "diffusers" in sys.modules:
        return False  # too late to change what they saw; they imported fine or torchvision works
    try:
        import torchvision  # noqa: F401
        return False
    except ImportError:
        return False  # not installed: nothing to hide
    except Exception:  # a broken build: RuntimeError from its op registrations
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None  # importlib.util.find_spec now answers None, `import` raises
        return True


def image_processor_class():
    """transformers' CLIP image processor: the PIL backend when torchvision is absent or hidden."""
    import transformers
    if sys.modules.get("torchvision", 0) is None or not _has_torchvision():
        try:
            return transformers.CLIPImageProcessorPil
        except (AttributeError, ImportError):
            return transformers.CLIPImageProcessor
    return transformers.CLIPImageProcessor


def _has_torchvision() -> bool:
    import importlib.util
    return importlib.util.find_spec("torchvision") is not None


def quiet_hub_progress() -> None:
    """No tqdm bars from transformers/diffusers loading and saving: our commands draw their own progress."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
