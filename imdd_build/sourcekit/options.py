"""Typed adapter options (`--opt key=value`, `options:` in a roots file, `--category`).

Each adapter declares `Options`, a pydantic model whose fields are the options it reads, with
their defaults and help (`imdd-build sources --options ID` prints them). Unknown keys are refused
with the list of valid ones, so a typo (`mask_treshold=5`) never passes silently; a bad value is
one line naming the option and what it accepts. The adapters keep reading `self.options` (a dict
of the validated values that are set), so this layer changes no adapter logic.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import RunError


def _as_list(value: Any) -> Any:
    """`a,b`, a YAML list or a single scalar -> list of strings (None stays None)."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, (tuple, set)):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def auto_none(value: Any) -> Any:
    """`auto` or an empty value means unset."""
    return None if isinstance(value, str) and value.strip().lower() in ("", "auto") else value


class AdapterOptions(BaseModel):
    """No options: the source's layout decides everything."""

    # `--opt product=7` arrives as the YAML number 7: a number is taken as its text where text is wanted
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class CategoryOptions(AdapterOptions):
    categories: Optional[list[str]] = Field(None, description="Only these products/categories (`--category`, "
                                                              "repeatable; or a,b).")

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, value: Any) -> Any:
        return _as_list(value)


class ProductOptions(AdapterOptions):
    product: Optional[str] = Field(None, description="The product name records get (default: the --domain, "
                                                     "else unknown; never the folder's name).")


class NormalOptions(AdapterOptions):
    normal: Optional[list[str]] = Field(None, description="Class names that mean defect-free (default: good, ok, "
                                                          "normal, none, pass, no_defect, ...).")

    @field_validator("normal", mode="before")
    @classmethod
    def _normal(cls, value: Any) -> Any:
        return _as_list(value)


class GroupOptions(AdapterOptions):
    group: Optional[str] = Field(None, description="Seeded splits: a regular expression on the image path; its "
                                                   "first group (else the match) must not straddle splits.")

    @field_validator("group")
    @classmethod
    def _regex(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value


class GenericOptions(ProductOptions, NormalOptions, GroupOptions):
    """What every generic adapter (your own data) reads."""


class MaskThresholdOptions(AdapterOptions):
    mask_threshold: Optional[int] = Field(None, ge=0, le=255,
                                          description="Gray value above which a mask pixel is a defect (default "
                                                      "127 for JPEG masks, else 0).")


# options that come from a CLI flag rather than --opt
FLAGS = {"categories": "category", "include_unlabeled": "include-unlabeled"}


class UnknownOption(RunError):
    """An option the adapter does not read."""


def validate_options(adapter_id: str, model: type[AdapterOptions], given: dict) -> dict:
    """The set, validated options as a dict; a ValueError of one line for an unknown key or bad value."""
    given = {k: v for k, v in given.items() if v is not None}
    valid = sorted(option_names(model))
    unknown = sorted(set(given) - set(valid))
    if unknown:
        hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, valid, n=1))
                 else f"{k!r} (--{FLAGS[k]})" if k in FLAGS else repr(k) for k in unknown]
        raise UnknownOption(f"unknown option {', '.join(hints)} for adapter {adapter_id}; valid options: "
                            f"{', '.join(valid) or 'none'} (see `imdd-build sources --options {adapter_id}`)")
    try:
        parsed = model.model_validate(given)
    except ValidationError as exc:
        raise RunError(f"adapter {adapter_id}: {one_line(exc, prefix='option ')}") from None
    return parsed.model_dump(exclude_unset=True, exclude_none=True, by_alias=True)


def option_names(model: type[AdapterOptions]) -> list[str]:
    """The keys users write (a field's alias where it has one: `json` is a BaseModel method name)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def one_line(exc: ValidationError, prefix: str = "") -> str:
    """A pydantic error as `field: what is wrong` parts on one line (no documentation links)."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error.get("loc", ())) or "value"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        given = error.get("input")
        shown = f" (got {given!r})" if given is not None and not isinstance(given, (dict, list)) \
            and repr(given) not in message else ""
        parts.append(f"{prefix}{field}: {message}{shown}")
    return "; ".join(parts)


def type_name(annotation: Any) -> str:
    """`Optional[list[str]]` -> `list[str]`, `Literal['a', 'b']` -> `a|b`."""
    text = re.sub(r"\btyping\.", "", str(getattr(annotation, "__name__", None) if isinstance(annotation, type)
                                        else annotation))
    text = re.sub(r"^Optional\[(.*)\]$", r"\1", text)
    literal = re.fullmatch(r"Literal\[(.*)\]", text)
    return "|".join(v.strip().strip("'\"") for v in literal.group(1).split(",")) if literal else text


def describe(model: type[AdapterOptions]) -> list[dict]:
    """Each option's name, type, default and help, for `sources --options`."""
    return [{"name": field.alias or name, "type": type_name(field.annotation), "default": field.default,
             "help": field.description or ""} for name, field in model.model_fields.items()]


__all__ = ["AdapterOptions", "CategoryOptions", "Field", "GenericOptions", "GroupOptions", "Literal",
           "MaskThresholdOptions", "NormalOptions", "Optional", "ProductOptions", "UnknownOption", "auto_none",
           "describe", "field_validator", "one_line", "option_names", "validate_options"]
