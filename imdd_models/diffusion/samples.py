"""The folder `imdd-models generate` writes: `000.png` ... (the samples), `grid.png` (for people) and
`generate.json` (the options and the sample files). Read by `evaluate-generation` (which files are samples) and
by `generate` itself (the samples of an earlier run into the same folder). Torch-free."""

from __future__ import annotations

import json
from pathlib import Path

from imdd_build.errors import RunError

RECORD = "generate.json"


def sample_name(i: int) -> str:
    return f"{i:03d}.png"


def listed_samples(folder: Path) -> set[str] | None:
    """The sample file names `folder`'s generate.json lists; None when there is no generate.json (a folder of
    someone's own images); RunError naming the file when it is not one generate wrote."""
    record = Path(folder) / RECORD
    if not record.is_file():
        return None
    try:
        return {Path(p).name for p in json.loads(record.read_text())["images"]}
    except (ValueError, KeyError, TypeError):
        raise RunError(f"{record}: not a generate.json (no 'images' list)") from None
