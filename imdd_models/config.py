"""One typed, validated configuration model for both training stages.

Every training configuration (stage 1 `TrainConfig` in `imdd_models.diffusion.config`, stage 2 `SegConfig` in
`imdd_models.segmentation.config`) is a pydantic model derived from `StageConfig`: unknown keys are refused,
values are coerced where YAML is loose (PyYAML reads `1e-3` as the string "1e-3"; pydantic makes it a float) and
ranges are checked by the field declarations. A preset is a dict of overrides; a YAML file names its preset with
`base:` and overrides any field. Any problem is one `RunError` line naming the file (or preset) and the field.

torch-free: `--help` and config validation import no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from imdd_build.errors import RunError

C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base of every stage's config: strict about keys, lenient about YAML's number spellings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _field_name(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def validation_error(where: str, exc: ValidationError) -> RunError:
    """One line: `where: field: reason; field: reason` (pydantic's messages, without its URLs)."""
    parts = []
    for err in exc.errors(include_url=False):
        name = _field_name(err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            parts.append(f"unknown field {name}")
        else:
            parts.append(f"{name}: {err.get('msg')} (got {err.get('input')!r})")
    return RunError(f"{where}: " + "; ".join(parts))


def build_config(model: type[C], values: Mapping[str, Any], where: str) -> C:
    """`model(**values)`, with a validation failure turned into one RunError line naming `where`."""
    try:
        return model(**dict(values))
    except ValidationError as exc:
        raise validation_error(where, exc) from None


def load_stage_config(spec: str | Path, model: type[C], presets: Mapping[str, Mapping[str, Any]],
                      default_base: str, option: str = "--config") -> C:
    """A preset name, or a YAML file (`base: PRESET` plus any fields of `model`), validated into `model`."""
    spec = str(spec)
    if spec in presets:
        return build_config(model, presets[spec], f"preset {spec}")
    path = Path(spec)
    if not path.is_file():
        raise RunError(f"{option} {spec}: neither a preset ({', '.join(presets)}) nor a file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:  # not a ValueError: without this, a typo in the file is a traceback
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise RunError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    except UnicodeDecodeError:
        raise RunError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: expected a mapping of {model.__name__} fields")
    base = data.pop("base", default_base)
    if base not in presets:
        raise RunError(f"{path}: base {base!r} is not a preset ({', '.join(presets)})")
    return build_config(model, {**presets[base], **data}, str(path))
