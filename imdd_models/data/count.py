"""How many samples a source holds under `--split` and `--where`: training's steps per epoch.

Read from what is recorded where possible (a latent folder's `latents.json`, a shard folder's
`manifest.json`), else from the shards' metadata columns (latent and image Parquet shards: the pixel
columns are never read) or, for local WebDataset tars, a pass over their rows (no decoding). None where it
is unknown without streaming remote data (Hub ids, tar URLs): the caller asks for --max-steps.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq

from .sources import DataSource, normalize_row, parquet_errors, shard_rows, wanted_split
from .where import parse_where, selected

_PIXEL_COLUMNS = ("image", "mask", "class_mask", "latent", "latent_flip", "image_embed", "image_embed_flip",
                  "input_ids", "latent_shape")


def _all_latent_shards(source: DataSource) -> bool:
    return len(source.shards) == len(list((Path(source.spec) / "latents").glob("*.parquet")))


def _metadata_rows(path: str, needed: set[str]):
    """A Parquet shard's rows with only the `needed` top-level fields (and a latent shard's `fields` JSON
    when one of them has no column of its own): never the pixel or latent columns."""
    with parquet_errors(path):
        schema = [n for n in pq.read_schema(path).names if n not in _PIXEL_COLUMNS]
        names = [n for n in schema if n in needed]
        if "fields" in schema and not needed <= set(names):
            names.append("fields")
        if not names:  # none of them stored: every row lacks them
            yield from ({} for _ in range(pq.ParquetFile(path).metadata.num_rows))
            return
        rows = pq.read_table(path, columns=names).to_pylist()
    for row in rows:
        yield normalize_row(row)


def row_counts(shards: list) -> list[int] | None:
    """Rows of each shard from the Parquet footers (None: not every shard is a local Parquet or latent file)."""
    if not all(shard.kind in ("parquet", "latents") and Path(shard.location).is_file() for shard in shards):
        return None
    return [_num_rows(shard.location) for shard in shards]


def _num_rows(path: str) -> int:
    with parquet_errors(path):
        return pq.ParquetFile(path).metadata.num_rows


def shard_counts(shards: list, split: str | None = None, where: str | None = None) -> list[int] | None:
    """Rows of each shard that `--split`/`--where` keep, from metadata alone (None: not every shard is a
    local Parquet or latent file, whose counting would mean streaming the data)."""
    if not all(shard.kind in ("parquet", "latents") and Path(shard.location).is_file() for shard in shards):
        return None
    return list(_counts(tuple(shard.location for shard in shards), wanted_split(split), where))


@lru_cache(maxsize=8)
def _counts(locations: tuple[str, ...], split: str | None, where: str | None) -> tuple[int, ...]:
    """Per-file counts, once per process for the same files and filters (steps per epoch, then the stream)."""
    terms = parse_where(where)
    needed = {"split"} | {name.split(".")[0] for name, _, _ in terms}
    return tuple(sum(1 for row in _metadata_rows(path, needed) if selected(row, split, terms)) for path in locations)


def samples_in(source: DataSource, split: str | None = None, where: str | None = None) -> int | None:
    """Samples of `source` that `--split`/`--where` keep (None: unknown without streaming remote data)."""
    split, terms = wanted_split(split), parse_where(where)
    if source.kind == "latents" and not terms:
        manifest = source.manifest or {}
        made_with = wanted_split((manifest.get("options") or {}).get("split"))
        if manifest.get("samples") is not None and split in (None, made_with) and _all_latent_shards(source):
            return int(manifest["samples"])
        if split is not None and made_with is None and manifest.get("splits") is not None:
            return int(manifest["splits"].get(split, 0))
    if source.kind == "images" and not terms:
        try:
            manifest = json.loads((Path(source.spec) / "manifest.json").read_text())
            kinds = {s["format"] for s in manifest.get("shards", [])}
            fmt = "parquet" if "parquet" in kinds else "webdataset"
            return sum(s["samples"] for s in manifest["shards"]
                       if s["format"] == fmt and split in (None, s.get("split")))
        except (OSError, ValueError, KeyError, TypeError):
            pass
    counts = shard_counts(source.shards, split, where)
    if counts is not None:
        return sum(counts)
    if not all(shard.kind == "webdataset" and Path(shard.location).is_file() for shard in source.shards):
        return None
    return sum(1 for shard in source.shards for row in shard_rows(shard) if selected(row, split, terms))
