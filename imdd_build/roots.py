"""`--roots FILE`: where the user unpacked each source, and whether each download is complete.

The file is YAML: `id: path`, or `id: {root: path, options: {...}}`, or, for a private line read by a
generic adapter, `id: {adapter: folder, root: path, license: ..., domain: ...}`. Relative paths are
relative to the roots file.

`check_roots` lists each source with its adapter (no decoding) and compares what it finds with the
published counts in sources.yaml: a short download is reported as `incomplete`, never accepted silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from .record import Quarantined
from .registry import SourceEntry
from .source_entry import entry_from_spec
from .sources import RootError, get_adapter
from .sourcekit.listing import open_listing


def read_yaml_mapping(path: Path, what: str, shape: str) -> dict:
    """A small user-given YAML file that must be a mapping; RootError naming the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RootError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(raw, dict):
        raise RootError(f"{path}: expected a YAML mapping of {shape}")
    return raw


def load_roots(path: Path) -> dict[str, dict]:
    raw = read_yaml_mapping(path, "roots file", "source id -> root path")
    out = {}
    for sid, value in raw.items():
        spec = {"root": value} if isinstance(value, (str, Path)) else dict(value or {})
        if not spec.get("root"):
            raise RootError(f"{path}: {sid}: no root given")
        root = Path(str(spec["root"])).expanduser()
        if not root.is_absolute():
            root = (Path(path).resolve().parent / root).resolve()
        spec["root"] = root
        out[str(sid)] = spec
    return out


def count_source(entry: SourceEntry, root: Path, options: dict | None = None) -> dict:
    """What the adapter lists under `root`: samples (`total`) by split, label and source label, and
    per-file problems; `listed` counts both (every item the listing named, e.g. CrackForest's 155
    photos of which 118 have ground truth)."""
    adapter = get_adapter(entry.adapter_id)(root, entry=entry, **(options or {}))
    by_split: Counter[str] = Counter()
    by_label: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    problems = 0
    for item in open_listing(adapter):
        if isinstance(item, Quarantined):
            problems += 1
            continue
        by_split[item.our_split()] += 1
        by_label[item.label] += 1
        by_class.update(dict.fromkeys(item.source_labels, 1))
    total = sum(by_label.values())
    return {"listed": total + problems, "total": total, "by_split": dict(sorted(by_split.items())),
            "by_label": dict(sorted(by_label.items())), "by_class": dict(sorted(by_class.items())),
            "problems": problems}


def compare_counts(entry: SourceEntry, found: dict, tolerance: float) -> tuple[str, list[dict]]:
    """`complete` | `incomplete` | `mismatch` | `unknown` (no published counts), with the differences."""
    published = entry.counts
    if not published and not entry.class_counts:
        return "unknown", []
    official = {s.lower() for s in entry.official_split}
    actual = {"total": found["total"], **found["by_label"]}
    if official:  # split counts are only comparable when the split is the source's own
        actual.update(found["by_split"])
    diffs = []
    for key, want in published.items():
        if key not in actual and key not in ("total", "normal", "defective"):
            continue
        have = actual.get(key, 0)
        if abs(have - want) > tolerance * want:
            diffs.append({"count": key, "published": want, "found": have})
    for name, want in entry.class_counts.items():
        have = found.get("by_class", {}).get(name, 0)
        if abs(have - want) > tolerance * want:
            diffs.append({"count": f"class {name}", "published": want, "found": have})
    if not diffs:
        return "complete", []
    short = any(d["found"] < d["published"] for d in diffs if d["count"] == "total")
    return ("incomplete" if short else "mismatch"), diffs


def load_label_map(path: Path | None) -> dict:
    """`--label-map FILE`: the user's source label -> canonical defect type (empty without a file)."""
    if path is None:
        return {}
    data = read_yaml_mapping(path, "label map", "source label -> canonical defect type")
    return {str(k): v for k, v in data.items()}


def check_roots(roots: Path, tolerance: float, on_total=None, on_advance=None) -> dict[str, dict]:
    """`sources --roots`: per source, whether its root exists and how its counts compare with the
    published ones (`status` complete/incomplete/mismatch/unknown/missing/error)."""
    checks = {}
    specs = load_roots(roots)
    if on_total:
        on_total(len(specs))
    for sid, spec in specs.items():
        check = {"root": str(spec["root"]), "exists": spec["root"].exists()}
        try:
            entry = entry_from_spec(sid, spec)
            if check["exists"]:
                found = count_source(entry, spec["root"], spec.get("options"))
                status, diffs = compare_counts(entry, found, tolerance)
                check.update(found=found, status=status, differences=diffs, published=entry.counts)
            else:
                check.update(status="missing")
        except RootError as exc:
            check.update(status="error", error=str(exc))
        checks[sid] = check
        if on_advance:
            on_advance()
    return checks
