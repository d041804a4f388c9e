"""Two-pass reading for selections: the light columns of every record first, the pixels of the chosen few after.

`iter_light(data, split, where, stats, fields)` yields one small dict per record, in shard order, with
`fields` (plus the fields `where` filters on) and `_loc`, the record's place in its source; no image, mask or
class-mask bytes are read into memory:
- Parquet shards: only the named columns are read (Parquet is columnar: the image columns stay on disk);
- WebDataset tars: only the `.json` (and `.txt`) members are extracted, the image members are skipped in the
  stream;
- Hub datasets: rows are streamed and their bytes dropped at once (memory stays bounded by one row).

`read_rows(data, split, locs)` then returns the raw rows (as `iter_raw` gives them, pixels still encoded) of
the chosen `_loc`s only, in the order asked, through the reader's own row making (`sources.shard_rows` and its
Parquet/WebDataset normalisation): Parquet reads only the row groups that hold a chosen row. Together they
keep a selection's peak memory proportional to what is chosen, not to the pool it is chosen from.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq

from imdd_build.errors import RunError

from .records import ReadStats
from .sources import DataSource, normalize_row, parquet_errors, sample_row, resolve, shard_rows
from .where import matches, parse_where

PIXEL_COLUMNS = ("image", "mask", "class_mask")
DEFAULT_FIELDS = ("key", "label", "defect_types", "split")


def _source(data: DataSource | str, split: str | None) -> DataSource:
    return data if isinstance(data, DataSource) else resolve(data, split)


def _parquet_light(path: str, fields: set[str]) -> Iterator[tuple[int, dict]]:
    with parquet_errors(path):
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        columns = [c for c in names if c in fields and c not in PIXEL_COLUMNS]
        pos = 0
        for batch in pf.iter_batches(batch_size=1024, columns=columns):
            for row in batch.to_pylist():
                yield pos, normalize_row(row)
                pos += 1


def _tar_light(location: str) -> Iterator[tuple[str, dict]]:
    """(key, row without pixels) per sample: only the `.json` and `.txt` members are extracted."""
    from webdataset.gopen import gopen
    stream = open(location, "rb") if Path(location).is_file() else gopen(location, "rb")
    current, members = None, {}
    with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)
            stem, _, ext = base[-1].partition(".")
            key = (base[0] + "/" + stem) if len(base) == 2 else stem
            if key != current and current is not None:
                yield current, sample_row(current, members)
                members = {}
            current = key
            if ext in ("json", "txt"):
                members[ext] = tar.extractfile(info).read()
            # image members are not extracted: the stream skips over their bytes
    if current is not None:
        yield current, sample_row(current, members)


def _light_rows(shard, fields: set[str]) -> Iterator[tuple[object, dict]]:
    if shard.kind == "parquet":
        yield from _parquet_light(shard.location, fields)
    elif shard.kind == "webdataset":
        yield from _tar_light(shard.location)
    else:  # hub (streamed): the row is read whole, its bytes dropped at once
        for row in shard_rows(shard):
            yield row.get("key"), row


def _where_fields(terms) -> set[str]:
    return {name.split(".")[0] for name, _, _ in terms}


def iter_light(data: DataSource | str, split: str | None = None, where: str | None = None,
               stats: ReadStats | None = None, fields: Iterable[str] = DEFAULT_FIELDS) -> Iterator[dict]:
    """Light rows (see the module docstring): `fields` and `_loc` = (shard index, position or key)."""
    source = _source(data, split)
    if source.kind != "images":
        raise RunError(f"{source.spec}: holds {source.kind}, not image shards (train-seg reads image shards)")
    terms = parse_where(where)
    stats = stats if stats is not None else ReadStats()
    wanted = set(fields) | {"key", "split"} | _where_fields(terms)
    for index, shard in enumerate(source.shards):
        for place, row in _light_rows(shard, wanted):
            stats.read += 1
            if (split and row.get("split") not in (None, split)) or not matches(row, terms):
                stats.filtered += 1
                continue
            light = {k: row.get(k) for k in wanted if k in row}
            light["_loc"] = (index, place)
            yield light


def read_rows(data: DataSource | str, split: str | None, locs: list[tuple[int, object]]) -> list[dict]:
    """The raw rows at `locs` (from `iter_light` over the same `data`/`split`), in the order of `locs`."""
    source = _source(data, split)
    by_shard: dict[int, set] = {}
    for shard_index, place in locs:
        by_shard.setdefault(shard_index, set()).add(place)
    found: dict[tuple[int, object], dict] = {}
    for shard_index, places in sorted(by_shard.items()):
        shard = source.shards[shard_index]
        if shard.kind == "parquet":
            rows = _parquet_take(shard.location, sorted(places))
        elif shard.kind == "webdataset":
            rows = ((row["key"], row) for row in shard_rows(shard) if row.get("key") in places)
        else:
            rows = ((row.get("key"), row) for row in shard_rows(shard) if row.get("key") in places)
        for place, row in rows:
            found[(shard_index, place)] = row
    missing = [loc for loc in locs if tuple(loc) not in found]
    if missing:
        raise RunError(f"{source.spec}: {len(missing)} chosen rows not found on the second read "
                         f"(first {missing[0]}); did the shards change?")
    return [found[tuple(loc)] for loc in locs]


def _parquet_take(path: str, positions: list[int]) -> Iterator[tuple[int, dict]]:
    """(position, raw row) of the given file positions, reading only the row groups that hold them."""
    with parquet_errors(path):
        pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)  # stream a row group's pages
        start = 0
        pending = list(positions)
        for group in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(group).num_rows
            here = [p for p in pending if start <= p < start + n]
            if here:
                # one row group at a time, released before the next is read (the chosen rows copied out first)
                rows = pf.read_row_group(group, use_threads=False).take([p - start for p in here]).to_pylist()
                for p, row in zip(here, rows):
                    yield p, normalize_row(row)
                del rows
            start += n
