"""The whole `imdd-models evaluate` run: read and check the predictions, join, score, break down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imdd_build.errors import RunError

from ..data import parse_where
from ..protocol import ClassSplit, load_class_split, parse_class_list
from .predictions import PredictionError, read_predictions
from .scoring import METRICS, MapReader, breakdowns, join, score, segmentation

DEFAULT_SPLIT = "test"
_KEYS_SHOWN = 5


def seen_unseen(classes_seen: str | None,
                class_split: str | Path | None) -> tuple[set[str] | None, set[str] | None, dict | None]:
    """(seen, unseen, split file contents) from `--classes-seen a,b` or `--class-split FILE` (not both).

    With `--classes-seen`, every other class of the split is unseen; with a class split file, seen =
    its `base` and unseen = its `novel` classes."""
    if classes_seen and class_split:
        raise RunError("give --classes-seen or --class-split, not both")
    if class_split:
        split: ClassSplit = load_class_split(class_split)
        return set(split.base), set(split.novel), split.to_dict()
    if classes_seen is not None:
        names = parse_class_list(classes_seen)
        if not names:
            raise RunError("--classes-seen: no class names given")
        return set(names), None, None
    return None, None, None


def absent_class_warnings(items, seen: set[str] | None, unseen: set[str] | None, flag: str) -> list[str]:
    """One line per named class that no record of the scored split carries (a misspelling, or a synonym where
    the data has the canonical name): its seen/unseen group would silently hold normal records alone."""
    import difflib
    present = sorted({t for item in items for t in (item.defect_types or [])})
    lines = []
    for name in sorted((seen or set()) | (unseen or set())):
        if name not in present:
            near = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
            lines.append(f"{flag}: no record of the split has the defect type {name!r}"
                         + (f"; did you mean {near[0]!r}?" if near else ""))
    return lines


def missing_message(counts: dict) -> str:
    """One line about the records of the split that have no prediction."""
    return (f"{counts['missing']} of {counts['records']} record(s) have no prediction "
            f"(first: {counts['missing_examples'][0]}); metrics are over the {counts['predicted']} predicted")


def missing_error(counts: dict, split: str | None) -> str:
    """The error of an incomplete predictions folder: how many, the first keys, the way out."""
    first = ", ".join(counts["missing_examples"][:_KEYS_SHOWN])
    more = ", ..." if counts["missing"] > _KEYS_SHOWN else ""
    return (f"{counts['missing']} of {counts['records']} record(s) of split {split or 'all'!r} have no prediction "
            f"(first: {first}{more}); predict them all, pick the split predicted with --split, or score the rest "
            f"with --allow-missing")


def resolve_split(split, meta: dict) -> tuple[str | None, str]:
    """(split to score, where it came from): `split` when given (`...` = not given), else meta.json's `split`
    (what `predict` predicted; null or "all" = every split), else "test"."""
    if split is not ...:
        return split, "--split"
    if "split" in meta:
        value = meta["split"]
        if value is not None and not isinstance(value, str):
            raise RunError(f"meta.json: split must be a split name or null (got {value!r})")
        return (None if value in (None, "", "all") else value), "meta.json"
    return DEFAULT_SPLIT, "default"


def evaluate(predictions: str | Path, data: str, *, split=..., where: str | None = None,
             classes_seen: str | None = None, class_split: str | Path | None = None, allow_extra: bool = False,
             breakdown: bool = True, pixel_bins: int = 0, strict: bool = True, allow_missing: bool = False,
             on_record: Callable[[], None] | None = None, on_group: Callable[[str], None] | None = None) -> dict:
    """Score a predictions folder against `data`'s `split`; the result is `imdd-models evaluate --json`.

    `split` not given: the split `predict` recorded in meta.json, else "test"; None scores every split.
    Complete by default: a record of the split without a prediction is a PredictionError naming how many and
    the first keys, unless `allow_missing` (then every metric's counts carry `missing`). `strict` is the
    default and kept for callers of the old signature. Every map a line references is loaded and checked."""
    parse_where(where)  # an unknown field is an error before anything is read
    seen, unseen, split_file = seen_unseen(classes_seen, class_split)
    preds = read_predictions(predictions, check_maps=True)
    split, split_from = resolve_split(split, preds.meta)
    items, join_counts = join(data, preds, split, where, allow_extra, on_record)
    if join_counts["missing"] and not allow_missing:
        raise PredictionError(missing_error(join_counts, split))
    maps = MapReader(preds.folder, pixel_bins)
    maps.prepare(items)
    seg = segmentation(items, maps)
    overall = score(items, maps, seg=seg)
    if on_group:
        on_group("all records")
    result = {"command": "evaluate", "data": str(data), "split": split, "split_from": split_from, "where": where,
              **join_counts, **{m: overall[m] for m in METRICS}, "per_class_iou": seg["per_class_iou"],
              "background_iou": seg["background_iou"], "counts": overall["counts"], "provenance": preds.provenance()}
    if split_file:
        result["class_split"] = split_file
    result["warnings"] = absent_class_warnings(items, seen, unseen, "--class-split" if split_file else "--classes-seen")
    if breakdown or seen is not None:
        result.update(breakdowns(items, maps, seen, unseen, by_group=breakdown, on_group=on_group, seg=seg))
    if join_counts["missing"]:
        _mark_missing(result, join_counts["missing"])
    return result


def _mark_missing(result: dict, missing: int) -> None:
    """--allow-missing: every metric's counts say how many records of the split had no prediction at all."""
    for metric in METRICS:
        result["counts"][metric] = {**result["counts"][metric], "missing": missing}
