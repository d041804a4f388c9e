"""The whole `imdd-models evaluate` run: read and check the predictions, join, score, break down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from imdd_build.errors import RunError

from ..protocol import ClassSplit, load_class_split, parse_class_list
from .predictions import PredictionError, read_predictions
from .scoring import METRICS, MapReader, breakdowns, join, score


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


def missing_message(counts: dict) -> str:
    """One line about the records of the split that have no prediction."""
    return (f"{counts['missing']} of {counts['records']} record(s) have no prediction "
            f"(first: {counts['missing_examples'][0]}); metrics are over the {counts['predicted']} predicted")


def evaluate(predictions: str | Path, data: str, *, split: str | None = "test", where: str | None = None,
             classes_seen: str | None = None, class_split: str | Path | None = None, allow_extra: bool = False,
             breakdown: bool = True, pixel_bins: int = 0, strict: bool = False,
             on_record: Callable[[], None] | None = None, on_group: Callable[[str], None] | None = None) -> dict:
    """Score a predictions folder against `data`'s `split`; the result is `imdd-models evaluate --json`."""
    seen, unseen, split_file = seen_unseen(classes_seen, class_split)
    preds = read_predictions(predictions)
    items, join_counts = join(data, preds, split, where, allow_extra, on_record)
    if join_counts["missing"] and strict:
        raise PredictionError(missing_message(join_counts))
    maps = MapReader(preds.folder, pixel_bins)
    maps.prepare(items)
    overall = score(items, maps)
    if on_group:
        on_group("all records")
    result = {"command": "evaluate", "data": str(data), "split": split, "where": where, **join_counts,
              **{m: overall[m] for m in METRICS}, "counts": overall["counts"], "provenance": preds.provenance()}
    if split_file:
        result["class_split"] = split_file
    if breakdown or seen is not None:
        result.update(breakdowns(items, maps, seen, unseen, by_group=breakdown, on_group=on_group))
    return result
