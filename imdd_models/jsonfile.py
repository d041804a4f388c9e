"""Reading the JSON files inside folders a user names (a model, components or latents folder, an --out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imdd_build.errors import RunError


def read_json(path: str | Path) -> Any:
    """The parsed file; a torn or hand-edited file is a run-level error naming it (not a traceback)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise RunError(f"{path}: not valid JSON ({exc})") from None
