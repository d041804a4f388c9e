"""Importing transformers/diffusers where torchvision is installed but cannot load, without patching the process.

PyPI's torchvision wheel is built against the CUDA torch; beside a CPU torch build its compiled ops fail to
load ("operator torchvision::nms does not exist"), and `transformers.modeling_utils` (through
`transformers.image_utils`) and diffusers then fail to import. Neither needs torchvision: both decide once,
and cache, whether it is available (transformers' `is_torchvision_available` is lru-cached, diffusers' a module
constant), and transformers has a PIL backend for the CLIP image processor.

`hf_ready()` is called by every function of ours that imports transformers/diffusers (not at `import
imdd_models`). The first call imports them; only when torchvision is broken, and only for the duration of that
import, torchvision is made to look absent (`sys.modules["torchvision"] = None`), then the entry is removed
again: afterwards the libraries' cached answers keep them away from torchvision, and `import torchvision`
behaves as it does on this install. With a working torchvision (CUDA machines) nothing is hidden.

transformers warns "`CLIPImageProcessor` requires torchvision (not installed); falling back to
`CLIPImageProcessorPil`" when diffusers imports the image processor names; that fallback is what we want, so
that one message (and only it) is filtered from transformers' import logger.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

_ready = False
_broken: bool | None = None
_FALLBACK_LOGGER = "transformers.utils.import_utils"


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' 'requires torchvision (not installed); falling back to ...Pil' notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision" not in record.getMessage()


def torchvision_broken() -> bool:
    """True when torchvision is installed but raises something other than ImportError on import (checked once)."""
    global _broken
    if _broken is None:
        if sys.modules.get("torchvision") is not None:
            _broken = False  # imported fine already
        else:
            try:
                import torchvision  # noqa: F401
                _broken = False
            except ImportError:
                _broken = False  # not installed (or hidden by someone else): the libraries see that themselves
            except Exception:  # noqa: BLE001  (a broken build: RuntimeError from its op registrations)
                for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                    del sys.modules[name]
                _broken = True
    return _broken


@contextmanager
def torchvision_hidden():
    """Within: a broken torchvision looks absent (`sys.modules["torchvision"] = None`); a working or missing one
    is left alone. The entry is removed on exit. For imports that decide once whether torchvision is there."""
    hide = torchvision_broken() and "torchvision" not in sys.modules
    if hide:
        sys.modules["torchvision"] = None  # importlib.util.find_spec answers None, `import` raises ImportError
    try:
        yield hide
    finally:
        if hide and sys.modules.get("torchvision", 0) is None:
            del sys.modules["torchvision"]


def hf_ready() -> None:
    """Make transformers and diffusers importable (idempotent; call before importing either)."""
    global _ready
    if _ready:
        return
    _ready = True
    logging.getLogger(_FALLBACK_LOGGER).addFilter(_TorchvisionFallbackFilter())
    if "transformers" in sys.modules and "diffusers" in sys.modules:
        return  # imported already (fine, or too late to change what they saw)
    with torchvision_hidden():
        import transformers  # noqa: F401
        import transformers.image_utils  # noqa: F401  (the module that imports torchvision when it is "available")
        import transformers.modeling_utils  # noqa: F401
        import diffusers  # noqa: F401
        import diffusers.loaders.ip_adapter  # noqa: F401  (where diffusers imports the image processor names)
        import diffusers.models  # noqa: F401


def image_processor_class():
    """transformers' CLIP image processor: the PIL backend when torchvision is not usable."""
    hf_ready()
    import transformers
    from transformers.utils import is_torchvision_available
    if not is_torchvision_available():
        try:
            return transformers.CLIPImageProcessorPil
        except (AttributeError, ImportError):
            return transformers.CLIPImageProcessor
    return transformers.CLIPImageProcessor


def hide_broken_torchvision() -> bool:
    """Old name of `hf_ready` (kept for callers elsewhere); True when torchvision is broken here."""
    hf_ready()
    return torchvision_broken()


def quiet_hub_progress() -> None:
    """No tqdm bars from transformers/diffusers loading and saving: our commands draw their own progress."""
    hf_ready()
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
