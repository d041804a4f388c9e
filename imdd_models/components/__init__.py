"""Components: presets, the implicit captioner, the components writer and `load_components`."""

from .captioner import ImplicitCaptioner, captioner_loss, choose_implicit, pseudo_context
from .loader import Components, load_components
from .presets import PRESETS, SD_SCHEDULER, get_preset
from .writer import write_components

__all__ = ["PRESETS", "SD_SCHEDULER", "Components", "ImplicitCaptioner", "captioner_loss", "choose_implicit",
           "get_preset", "load_components", "pseudo_context", "write_components"]
