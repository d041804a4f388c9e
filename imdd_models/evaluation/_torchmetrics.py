"""Import torchmetrics where torchvision is installed but cannot load.

torchmetrics decides whether torchvision is usable from the package metadata alone, then imports it
at import time (`torchmetrics.functional.image.arniqa`), so with the CUDA torchvision wheel beside a
CPU torch (`operator torchvision::nms does not exist`, `import
torchmetrics` fails. While importing it, we make the metadata lookup answer "not installed" for
torchvision when torchvision cannot actually be imported; the metrics used here (FID, KID, IS with
our own feature network) never need it.
"""

from __future__ import annotations

import sys


def import_torchmetrics():
    """`torchmetrics`, importable whether or not torchvision loads."""
    from .._compat import torchvision_broken
    if "torchmetrics" in sys.modules or not torchvision_broken():
        import torchmetrics
        return torchmetrics
    import lightning_utilities.core.imports as lu_imports
    from importlib.metadata import PackageNotFoundError
    original = lu_imports._version

    def version(name: str) -> str:
        if name == "torchvision":
            raise PackageNotFoundError(name)
        return original(name)

    from .._compat import torchvision_hidden

    lu_imports._version = version
    sys.modules["torchvision"] = None  # only while torchmetrics imports: some of its modules import it directly
    try:
        with torchvision_hidden():  # lightning's availability checks import it: make that an ImportError
            import torchmetrics
    finally:
        lu_imports._version = original
        if sys.modules.get("torchvision", 0) is None:
            del sys.modules["torchvision"]
    return torchmetrics
