"""Raw rows -> records: decoded image and mask, bad samples reported instead of raised."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .sources import DataSource, resolve, shard_rows
from .where import parse_where, selected


class BadSample(ValueError):
    """A row that cannot be used (undecodable image, missing pixels); the message names the key."""


@dataclass
class ReadStats:
    """What a pass over a source read, kept, filtered out and skipped as bad (with the first reasons)."""

    read: int = 0
    filtered: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)

    def add_bad(self, reason: str) -> None:
        self.bad += 1
        if len(self.bad_examples) < 20:
            self.bad_examples.append(reason)


def _open_image(data: bytes | None, key: str, what: str) -> Image.Image:
    if not data:
        raise BadSample(f"{key}: no {what} bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # noqa: BLE001  (PIL raises many types for corrupt data)
        raise BadSample(f"{key}: {what} does not decode ({type(exc).__name__}: {exc})") from None
    return image


def _class_mask(data: bytes | None, key: str) -> Image.Image | None:
    """The class mask as stored: an index image, so a palette one is read as its indices, never as colours."""
    if not data:
        return None
    image = _open_image(data, key, "class_mask")
    if image.mode == "P":
        return Image.fromarray(np.asarray(image, dtype=np.uint8), "L")
    return image if image.mode == "L" else image.convert("L")


def decode_record(row: dict) -> dict:
    """A raw row with `image` (PIL, as stored), `mask` (PIL "L" or None) and `class_mask` (PIL "L" with
    0 background, k = 1 + index into `defect_types`, or None) decoded; BadSample if unusable."""
    key = row.get("key") or "?"
    record = {k: v for k, v in row.items() if k not in ("image_bytes", "mask_bytes", "class_mask_bytes")}
    record["image"] = _open_image(row.get("image_bytes"), key, "image")
    record["mask"] = _open_image(row["mask_bytes"], key, "mask").convert("L") if row.get("mask_bytes") else None
    record["class_mask"] = _class_mask(row.get("class_mask_bytes"), key)
    record["caption"] = row.get("caption") or ""
    return record


def iter_raw(source: DataSource | str, split: str | None = None, where: str | None = None,
             stats: ReadStats | None = None) -> Iterator[dict]:
    """Raw rows of every shard in order, filtered by split and `--where` (nothing decoded)."""
    source = resolve(source, split) if not isinstance(source, DataSource) else source
    terms = parse_where(where)
    stats = stats if stats is not None else ReadStats()
    for shard in source.shards:
        for row in shard_rows(shard):
            stats.read += 1
            if not selected(row, split, terms):
                stats.filtered += 1
                continue
            yield row


def iter_records(source: DataSource | str, split: str | None = None, where: str | None = None,
                 stats: ReadStats | None = None) -> Iterator[dict]:
    """Decoded records of a source in shard order (for evaluation and prediction); bad ones skipped and counted."""
    stats = stats if stats is not None else ReadStats()
    for row in iter_raw(source, split, where, stats):
        try:
            yield decode_record(row)
        except BadSample as exc:
            stats.add_bad(str(exc))
