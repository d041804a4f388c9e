"""How many samples a source holds under `--split` and `--where`: training's steps per epoch.

Read from what is recorded where possible (a latent folder's `latents.json`, a shard folder's
`manifest.json`), else from the shards' metadata columns (latent and image Parquet shards: the pixel
columns are never read) or, for local WebDataset tars, a pass over their rows (no decoding). None where it
is unknown without streaming remote data (Hub ids, tar URLs): the caller asks for --max-steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from .sources import DataSource, _normalize, shard_rows, wanted_split
from .where import parse_where, selected

_PIXEL_COLUMNS = ("image", "mask", "class_mask", "latent", "latent_flip", "image_embed", "image_embed_flip",
                  "input_ids", "latent_shape")


def _all_latent_shards(source: DataSource) -> bool:
    return len(source.shards) == len(list((Path(source.spec) / "latents").glob("*.parquet")))


def _metadata_rows(path: str):
    """A Parquet shard's rows without its pixel (or latent) columns."""
    names = [n for n in pq.read_schema(path).names if n not in _PIXEL_COLUMNS]
    for row in pq.read_table(path, columns=names).to_pylist():
        yield row if "fields" in row else _normalize(row)


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
    count = 0
    for shard in source.shards:
        if shard.kind in ("parquet", "latents"):
            rows = _metadata_rows(shard.location)
        elif shard.kind == "webdataset" and Path(shard.location).is_file():
            rows = shard_rows(shard)
        else:
            return None
        count += sum(1 for row in rows if selected(row, split, terms))
    return count
