"""Import torchmetrics where torchvision is installed but cannot load.

torchmetrics decides whether torchvision is usable from the package metadata alone, then imports it
at import time (`torchmetrics.functional.image.arniqa`), so with the CUDA torchvision wheel beside a
CPU torch (`operator torchvision::nms does not exist`, hidden by `imdd_models._compat`) `import
torchmetrics` fails. While importing it, we make the metadata lookup answer "not installed" for
torchvision when torchvision cannot actually be imported; the metrics used here (FID, KID, IS with
our own feature network) never need it.
"""

from __future__ import annotations

import sys


def _torchvision_works() -> bool:
    if sys.modules.get("torchvision", 0) is None:  # hidden by imdd_models._compat
        return False
    try:
        import torchvision  # noqa: F401
        return True
    except Exception:  # noqa: BLE001  (ImportError, or RuntimeError from a broken build)
        return False


def import_torchmetrics():
    """`torchmetrics`, importable whether or not torchvision loads."""
    if "torchmetrics" in sys.modules or _torchvision_works():
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
    try:
        with torchvision_hidden():  # lightning's availability checks import it: make that an ImportError
            import torchmetrics
    finally:
        lu_imports._version = original
    return torchmetrics
