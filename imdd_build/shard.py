"""Shard: catalog -> Parquet (`data/{split}-{i:05d}-of-{n:05d}.parquet`) and WebDataset tars
(`webdataset/{split}-{i:06d}.tar`), a `manifest.json` and a `README.md` with `configs:`.

With `layout="by_source"` (what push-to-hub uses) every source gets its own folder,
`data/<source>/{split}-{i:05d}-of-{n:05d}.parquet`, so one config per source and the `default`
config can glob the same files without duplicating data.

Deterministic: records are ordered by a seeded hash of their key (or by key), shards are planned
from stored file sizes before anything is written, and no timestamps enter any file, so the same
catalog and options give byte-identical output.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from .catalog import Catalog, CatalogReader
from .executor import map_ordered
from .normalize import encode_mask, encode_png
from .record import SPLITS, Record
from .store import Store, sha256_file
from .writers import WRITERS, webdataset_features
from .errors import RunError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}
META_BYTES = 2048  # json + txt + tar headers per sample, for planning
MAX_FILES_PER_FOLDER = 10_000  # the Hub's limit on entries per folder
LAYOUTS = ("flat", "by_source")


def parse_size(text: str) -> int:
    """"500MB" -> 500_000_000 (decimal units, like `datasets`); "1GiB" -> 2**30."""
    m = _SIZE_RE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise RunError(f"invalid size {text!r} (examples: 500MB, 1GB, 256MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class ShardOptions:
    out: Path
    formats: tuple[str, ...] = ("parquet", "webdataset")
    max_shard_bytes: int = 500_000_000
    image_ext: str = "auto"  # webdataset image member: auto (stored bytes) | jpg | png (transcode to it)
    order: str = "shuffle"  # shuffle (seeded hash of key) | key
    seed: int = 0
    jpeg_quality: int = 95
    sources: tuple[str, ...] = ()
    layout: str = "flat"  # flat: data/{split}-*; by_source: data/<source>/{split}-*
    exclude: frozenset[str] = frozenset()  # keys left out (e.g. train copies of leaked test images)
    write_readme: bool = True
    workers: int = 1  # shards are written in parallel processes; the bytes do not depend on this


@dataclass
class _Entry:
    order: str
    key: str
    nbytes: int


@dataclass
class ShardPlan:
    # (folder prefix, split) -> shards -> keys; the prefix is "" (flat) or "<source>/" (by_source)
    groups: dict[tuple[str, str], list[list[str]]] = field(default_factory=dict)
    image_formats: Counter = field(default_factory=Counter)
    with_masks: bool = False
    with_class_masks: bool = False
    total: int = 0
    uncaptioned: int = 0
    excluded_rejected: int = 0
    excluded_keys: int = 0

    @property
    def splits(self) -> dict[str, list[list[str]]]:
        """split -> every shard of that split (all folders), in SPLITS order."""
        out: dict[str, list[list[str]]] = {}
        for split in SPLITS:
            for (_prefix, s), shards in self.groups.items():
                if s == split:
                    out.setdefault(split, []).extend(shards)
        return out


def plan_shards(catalog: Catalog, store: Store, options: ShardOptions) -> ShardPlan:
    """Which keys go into which shard of which split (records with a rejected caption are left out)."""
    if options.layout not in LAYOUTS:
        raise RunError(f"invalid layout {options.layout!r} ({' or '.join(LAYOUTS)})")
    plan = ShardPlan()
    entries: dict[tuple[str, str], list[_Entry]] = {}
    for record in catalog.iter_records():
        if options.sources and record.source not in options.sources:
            continue
        if record.caption_status == "rejected":
            plan.excluded_rejected += 1
            continue
        if record.key in options.exclude:
            plan.excluded_keys += 1
            continue
        nbytes = store.size(record.image) + (store.size(record.mask) if record.mask else 0) + META_BYTES \
            + (store.size(record.class_mask) if record.class_mask else 0)
        order = record.key if options.order == "key" else hashlib.sha256(
            f"{options.seed}:{record.key}".encode()).hexdigest()
        prefix = f"{record.source}/" if options.layout == "by_source" else ""
        entries.setdefault((prefix, record.split), []).append(_Entry(order, record.key, nbytes))
        plan.image_formats[record.image_format] += 1
        plan.with_masks |= record.mask is not None
        plan.with_class_masks |= record.class_mask is not None
        plan.uncaptioned += record.caption is None
        plan.total += 1
    for prefix, split in sorted(entries, key=lambda g: (g[0], SPLITS.index(g[1]))):
        shards: list[list[str]] = []
        size = 0
        for entry in sorted(entries[(prefix, split)], key=lambda e: (e.order, e.key)):
            if not shards or (size + entry.nbytes > options.max_shard_bytes and shards[-1]):
                shards.append([])
                size = 0
            shards[-1].append(entry.key)
            size += entry.nbytes
        plan.groups[(prefix, split)] = shards
    per_folder = Counter()
    for (prefix, _split), shards in plan.groups.items():
        per_folder[prefix] += len(shards)
    for prefix, n in per_folder.items():
        if n >= MAX_FILES_PER_FOLDER:
            raise RunError(f"{n} shards in data/{prefix}: the Hub allows fewer than {MAX_FILES_PER_FOLDER} files "
                             "per folder; raise --max-shard-size")
    return plan


def _resolve_image_ext(requested: str, formats: Counter) -> tuple[str, bool]:
    """(the WebDataset image member's extension, whether the stored bytes go in unchanged)."""
    if requested in ("jpg", "png"):
        return requested, False
    if requested != "auto":
        raise RunError(f"invalid image extension {requested!r} (auto, jpg or png)")
    # One extension for every sample (HF infers features from the first samples), the stored bytes
    # whatever it is: the readers decode by content. `.png` only when every image is a PNG.
    return ("png" if set(formats) == {"png"} else "jpg"), True


def _transcode(data: bytes, to_ext: str, quality: int) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        if to_ext == "jpg":
            im.convert("RGB").save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
        else:
            im.load()
            return encode_png(im.convert("RGB") if im.mode != "RGB" else im)  # 3-4x faster than Pillow's
        return buf.getvalue()


def shard_name(fmt: str, split: str, index: int, count: int, prefix: str = "") -> str:
    if fmt == "parquet":
        return f"data/{prefix}{split}-{index:05d}-of-{count:05d}.parquet"
    return f"webdataset/{prefix}{split}-{index:06d}.tar"


def _remove_stale(out: Path, keep: set[str]) -> list[str]:
    removed = []
    for pattern in ("data/**/*.parquet", "webdataset/**/*.tar", "data/**/.*.tmp", "webdataset/**/.*.tmp"):
        for path in sorted(out.glob(pattern)):
            rel = path.relative_to(out).as_posix()
            if rel not in keep and path.is_file():
                path.unlink()
                removed.append(rel)
    for folder in sorted((p for d in ("data", "webdataset") for p in [out / d, *(out / d).glob("**/*")]
                          if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    return removed


def dataset_readme(plan: ShardPlan, options: ShardOptions, counts: dict[str, Counter],
                   split_bytes: dict[str, Counter], image_ext: str = "jpg") -> str:
    """README.md with the YAML `configs:` that `datasets.load_dataset(DIR)` reads.

    The config is the Parquet files, else the tars; tars come with their features declared
    (`webdataset_features`), so `datasets` does not infer them from the first samples."""
    fmt = "parquet" if "parquet" in options.formats else "webdataset"
    pattern = "data/{split}-*.parquet" if fmt == "parquet" else "webdataset/{split}-*.tar"
    if options.layout == "by_source":
        pattern = pattern.replace("/{split}", "/*/{split}")
    info = {"features": webdataset_features(image_ext, plan.with_masks, plan.with_class_masks)} \
        if fmt == "webdataset" else {}
    # num_bytes: bytes of the split's files in the config's format.
    info["splits"] = [{"name": split, "num_bytes": split_bytes[fmt].get(split, 0),
                       "num_examples": sum(len(s) for s in shards)} for split, shards in plan.splits.items()]
    header = {"configs": [{"config_name": "default", "data_files": [
        {"split": split, "path": pattern.format(split=split)} for split in plan.splits]}],
        "dataset_info": info}
    lines = ["---", yaml.safe_dump(header, sort_keys=False).rstrip(), "---", "",
             "# IMDD shards", "",
             "Industrial defect images (512x512 RGB) with masks, boxes and captions, written by `imdd-build shard`.",
             "", "| split | images | normal | defective |", "| --- | --- | --- | --- |"]
    for split in plan.splits:
        c = counts[split]
        lines.append(f"| {split} | {sum(c.values())} | {c['normal']} | {c['defective']} |")
    lines += ["", "```python", "from datasets import load_dataset",
              'ds = load_dataset("imdd-1m")  # in the folder holding imdd-1m/ (the default'
              ' `imdd-build shard` output); else this folder\'s path',
              "```", ""]
    return "\n".join(lines)


@dataclass
class _ShardJob:
    prefix: str
    split: str
    index: int
    count: int
    keys: list[str]


class _ShardWriter:
    """Writes one planned shard in every format; a plain object so it pickles into worker processes.

    Each call opens the catalog read-only: workers never write it, and SQLite's WAL lets them read
    while nothing else writes."""

    def __init__(self, catalog_path: Path, store_root: Path, options: ShardOptions, image_ext: str,
                 with_masks: bool, keep_bytes: bool = False, with_class_masks: bool = False):
        self.catalog_path, self.store_root, self.options = catalog_path, store_root, options
        self.image_ext, self.with_masks, self.keep_bytes = image_ext, with_masks, keep_bytes
        self.with_class_masks = with_class_masks

    def __call__(self, job: _ShardJob) -> tuple[list[dict], Counter]:
        options, out, store = self.options, Path(self.options.out), Store(self.store_root)
        stored_ext = {"jpeg": "jpg", "png": "png"}
        zero_mask = encode_mask(np.zeros((512, 512), dtype=np.uint8))
        writers = {fmt: WRITERS[fmt](out / shard_name(fmt, job.split, job.index, job.count, job.prefix),
                                     self.image_ext, self.with_masks, self.with_class_masks)
                   for fmt in options.formats}
        labels: Counter = Counter()
        reader = CatalogReader(self.catalog_path)
        try:
            for key in job.keys:
                record = reader.get(key)
                image = store.read(record.image)
                mask = store.read(record.mask) if record.mask else None
                class_mask = store.read(record.class_mask) if record.class_mask else None
                own_ext = stored_ext[record.image_format]
                for fmt, writer in writers.items():
                    if fmt == "webdataset":
                        keep = self.keep_bytes or own_ext == self.image_ext
                        wds_image = image if keep else _transcode(image, self.image_ext, options.jpeg_quality)
                        # Every sample has the same members: an all-zero stand-in where a record has
                        # no (class) mask; `has_mask` / `has_class_mask` in its .json say so.
                        writer.write(record, wds_image, self.image_ext, mask if mask is not None else zero_mask,
                                     class_mask if class_mask is not None else zero_mask)
                    else:
                        writer.write(record, image, own_ext, mask, class_mask)
                labels[record.label] += 1
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        finally:
            reader.close()
        entries = []
        for fmt, writer in writers.items():
            writer.close()
            rel = shard_name(fmt, job.split, job.index, job.count, job.prefix)
            entry = {"path": rel, "format": fmt, "split": job.split, "samples": writer.count,
                     "bytes": (out / rel).stat().st_size, "sha256": sha256_file(out / rel),
                     "normal": labels["normal"], "defective": labels["defective"]}
            if job.prefix:
                entry["source"] = job.prefix.rstrip("/")
            entries.append(entry)
        return entries, labels


def write_shards(catalog: Catalog, store: Store, options: ShardOptions,
                 on_total: Callable[[int], None] | None = None,
                 on_record: Callable[[Record], None] | None = None,
                 on_advance: Callable[[int], None] | None = None) -> dict:
    """Write every planned shard in every requested format; return the manifest-like summary.

    `options.workers` > 1 writes shards in parallel processes (same bytes). Progress: `on_advance(n)`
    after each shard with its sample count (`on_record` is kept for callers that count records;
    it is called with None per sample, after the shard is written).
    """
    unknown = set(options.formats) - set(WRITERS)
    if unknown or not options.formats:
        raise RunError(f"unknown shard format(s) {sorted(unknown)}; choose from {sorted(WRITERS)}")
    plan = plan_shards(catalog, store, options)
    if on_total:
        on_total(plan.total)
    image_ext, keep_bytes = _resolve_image_ext(options.image_ext, plan.image_formats)
    out = Path(options.out)
    for fmt in options.formats:
        (out / ("data" if fmt == "parquet" else "webdataset")).mkdir(parents=True, exist_ok=True)
    jobs = []
    for (prefix, split), shards in plan.groups.items():
        if prefix:
            for fmt in options.formats:
                (out / shard_name(fmt, split, 0, 1, prefix)).parent.mkdir(parents=True, exist_ok=True)
        jobs += [_ShardJob(prefix, split, index, len(shards), keys) for index, keys in enumerate(shards)]
    writer = _ShardWriter(catalog.path, store.root, options, image_ext, plan.with_masks, keep_bytes,
                          plan.with_class_masks)
    manifest_shards = []
    counts: dict[str, Counter] = {split: Counter() for split in plan.splits}
    for job, (entries, labels) in zip(jobs, map_ordered(writer, jobs, max(1, options.workers),
                                                        inflight_per_worker=2, chunksize=1)):
        manifest_shards.extend(entries)
        counts[job.split].update(labels)
        if on_advance:
            on_advance(len(job.keys))
        if on_record:
            for _ in job.keys:
                on_record(None)
    removed = _remove_stale(out, {s["path"] for s in manifest_shards})
    manifest = {
        "format_version": 1,
        "formats": list(options.formats),
        "image_ext": image_ext,
        "image_bytes": "stored" if keep_bytes else "transcoded",  # webdataset: the catalog's bytes or re-encoded
        "has_masks": plan.with_masks,
        "has_class_masks": plan.with_class_masks,
        # the tars' members as `datasets` features (YAML form): load them without schema inference
        **({"webdataset_features": webdataset_features(image_ext, plan.with_masks, plan.with_class_masks)}
           if "webdataset" in options.formats else {}),
        "order": options.order,
        "seed": options.seed,
        "splits": {split: sum(c.values()) for split, c in counts.items()},
        "shards": manifest_shards,
    }
    _write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    split_bytes: dict[str, Counter] = {fmt: Counter() for fmt in WRITERS}
    for s in manifest_shards:
        split_bytes[s["format"]][s["split"]] += s["bytes"]
    if options.write_readme:
        _write_atomic(out / "README.md", dataset_readme(plan, options, counts, split_bytes, image_ext).encode())
    return {"command": "shard", "out": str(out), "records": plan.total, "splits": manifest["splits"],
            "shards": len(manifest_shards), "image_ext": image_ext, "has_masks": plan.with_masks,
            "has_class_masks": plan.with_class_masks,
            "uncaptioned": plan.uncaptioned, "excluded_rejected": plan.excluded_rejected,
            "excluded_keys": plan.excluded_keys,
            "removed_stale": removed, "manifest": str(out / "manifest.json")}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
