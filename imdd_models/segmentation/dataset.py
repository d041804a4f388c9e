"""The training set of `train-seg`: which records, which classes, and the few-shot selection.

A first pass reads only the light columns of the pool (key, label, defect types, split and what `--where`
filters on; `imdd_models.data.columns.iter_light`: no image bytes are read into memory) and picks the rows;
a second pass reads the chosen rows' pixels only (`read_rows`). Peak memory follows the selection, not the
pool (`bench/seg_train.py` measures it).
Trained classes are `--classes` (canonical names or taxonomy synonyms), all defect types of the pool
(`all`), or the base classes of a class split file (`base`/`novel`, see imdd_models.protocol).
A record is used when it carries a trained class, or is normal; records whose defects are all outside
the trained classes are left out so those classes stay unseen.

With `--shots K` the lead's `sample_shots` picks exactly K records per trained class (seeded,
independent of order, machine and process count) and K normal records the same way (pseudo-class
`normal`; `--normal-shots` sets another count: normal images are the cheap ones to collect); a class
with fewer than K records uses all it has and `short` says so. Chosen rows whose
pixels do not decode are left out and counted (`bad`, with reasons): one broken image never stops a run.
The chosen rows keep their encoded bytes in memory (a few-shot set is small; without `--shots` this is
the whole used pool) and are decoded per batch in the DataLoader workers (`SegSamples`) by the reader's
`decode_record`, then augmented (augment.py), turned into targets and preprocessed for the frozen backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imdd_build.errors import RunError

from ..data import BadSample, ReadStats, decode_record
from ..data.columns import iter_light, read_rows
from ..protocol import load_class_split, parse_class_list, sample_shots
from .vocabulary import canonical_type, check_trained_names

NORMAL = "normal"


@dataclass
class TrainingSet:
    rows: list[dict]
    classes: list[str]
    per_class: dict[str, int] = field(default_factory=dict)
    short: dict[str, int] = field(default_factory=dict)
    normal: int = 0
    stats: ReadStats = field(default_factory=ReadStats)

    def summary(self) -> dict:
        return {"samples": len(self.rows), "per_class": dict(self.per_class), "normal": self.normal,
                "short": dict(self.short), "read": self.stats.read, "filtered": self.stats.filtered,
                "bad": self.stats.bad, "bad_examples": self.stats.bad_examples[:5]}


def class_names(text: str) -> tuple[list[str], list[str]]:
    """`--classes` as (names, held-out names): a class split file (YAML/JSON with `base` and `novel`, see
    `imdd_models.protocol`) gives its base classes to train on and its novel ones; else `a,b,...` or `all`."""
    path = Path(text.strip())
    if path.suffix.lower() in (".yaml", ".yml", ".json") and (path.is_file() or "," not in text):
        split = load_class_split(path)
        return list(split.base), list(split.novel)
    return list(parse_class_list(text)), []


def requested_names(text: str) -> list[str]:
    """Every name `--classes` asks to look for at prediction: a split file's base then novel classes, or the list."""
    base, novel = class_names(text)
    return base + [c for c in novel if c not in base]


def resolve_classes(text: str, pool_types: set[str], where: str = "the training data") -> list[str]:
    """`all` -> every type in the pool (sorted); else the listed names (or a class split file's base
    classes), synonyms mapped to canonical ids."""
    if text.strip().lower() == "all":
        if not pool_types:
            raise RunError(f"--classes all: {where} holds no defect records; train on a split that has them "
                           "(--split)")
        return sorted(pool_types)
    names = []
    for name in class_names(text)[0]:
        canon = canonical_type(name) or name
        if canon not in names:
            names.append(canon)
    if not names:
        raise RunError("--classes: no class names given")
    return names


def select(data: str, split: str | None, where: str | None, classes: str, shots: int | None,
           seed: int, normal_shots: int | None = None) -> TrainingSet:
    """Read the pool's light columns, pick the training rows, read their pixels (see the module docstring).

    `normal_shots`: how many normal records go with `shots` (default: as many as `shots`; 0: none)."""
    stats = ReadStats()
    pool = []  # (key, types, normal, location): no pixels, no captions
    for row in iter_light(data, split, where, stats):
        types = list(row.get("defect_types") or [])
        pool.append((row["key"], types, row.get("label") == NORMAL and not types, row["_loc"]))
    if not pool:
        from ..data.explain import no_records_message
        raise RunError(no_records_message(data, split, where))
    where_text = f"{data}" + (f" (split {split})" if split else "")
    trained = resolve_classes(classes, {t for _, types, _, _ in pool for t in types}, where_text)
    wanted = set(trained)
    used = [(key, [t for t in types if t in wanted], normal, loc) for key, types, normal, loc in pool
            if normal or wanted & set(types)]
    counts = {c: sum(c in types for _, types, _, _ in used) for c in trained}
    check_trained_names(trained, counts, {t for _, types, _, _ in pool for t in types}, where_text)
    del pool
    if shots is None:
        rows = _decodable(read_rows(data, split, [loc for _, _, _, loc in used]), stats)
        return TrainingSet(rows, trained, counts, {c: 0 for c, n in counts.items() if n == 0},
                           sum(n for _, _, n, _ in used), stats)
    defective = sample_shots(((k, types) for k, types, normal, _ in used if not normal), shots, seed, trained)
    n_normal = shots if normal_shots is None else normal_shots
    normals = (sample_shots(((k, [NORMAL]) for k, _, normal, _ in used if normal), n_normal, seed, [NORMAL])
               if n_normal else None)
    keep = set(defective.keys) | set(normals.keys if normals else ())
    chosen = sorted((key, loc) for key, _, _, loc in used if key in keep)
    rows = _decodable(read_rows(data, split, [loc for _, loc in chosen]), stats)
    short = dict(defective.short)
    if normals and normals.short.get(NORMAL, n_normal) < n_normal and any(n for _, _, n, _ in used):
        short[NORMAL] = normals.short[NORMAL]
    n_chosen = normals.per_class.get(NORMAL, 0) if normals else 0
    return TrainingSet(rows, trained, dict(defective.per_class), short, n_chosen, stats)


def _decodable(rows: list[dict], stats: ReadStats) -> list[dict]:
    """The rows whose pixels decode; the others are counted as bad (their reason kept) and left out."""
    good = []
    for row in rows:
        try:
            decode_record(row)
        except BadSample as exc:
            stats.add_bad(str(exc))
            continue
        good.append(row)
    return good


class SegSamples:
    """Map-style dataset over the chosen rows, indexed by (global step, row index): decode, augment (the view
    of that step and row), build the target and preprocess for the frozen backbone. Everything here runs in a
    DataLoader worker when `--num-workers` > 0, and depends only on (seed, step, row): the same in any worker."""

    def __init__(self, rows: list[dict], class_index: dict[str, int], resolution: int, max_segments: int,
                 image_processor, aug: dict, seed: int):
        self.rows, self.class_index, self.resolution = rows, class_index, resolution
        self.max_segments, self.image_processor, self.aug, self.seed = max_segments, image_processor, aug, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        from . import augment
        from .features import prepare_inputs
        from .targets import build_target
        step, i = item
        record = decode_record(self.rows[i])
        view = augment.draw_view(self.aug, self.seed, step, i, record["image"].size)
        record = augment.apply(record, view)
        target = build_target(record, self.class_index, self.resolution, self.max_segments)
        prepared = prepare_inputs([record["image"]], self.resolution, self.image_processor)
        return {"key": record["key"], "view": view.tag(), "target": target, "pixels": prepared["pixels"][0],
                "clip": None if prepared["clip"] is None else prepared["clip"][0]}


def collate(samples: list[dict]) -> dict:
    """A batch: stacked `pixels` (and `clip`), the targets and keys as lists, `cache_keys` = key + view."""
    import torch
    clip = [s["clip"] for s in samples]
    return {"pixels": torch.stack([s["pixels"] for s in samples]),
            "clip": None if clip[0] is None else torch.stack(clip),
            "targets": [s["target"] for s in samples], "keys": [s["key"] for s in samples],
            "cache_keys": [s["key"] + ("#" + s["view"] if s["view"] else "") for s in samples]}
