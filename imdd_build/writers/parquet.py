"""Parquet shards in the layout `datasets` and the Hub expect (Image bytes embedded, features in metadata)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..record import Record
from .rows import FEATURES, arrow_schema, record_row

ROW_GROUP_BYTES = 90_000_000  # the Hub's row-group guidance is under 100 MB; keep a margin
# Rows are buffered as Python dicts until a row group is written: tens of KB each beyond their
# image bytes, so tiny images would otherwise buffer ~30k rows (GBs) per writer before the byte limit.
ROW_GROUP_ROWS = 1000


class ParquetShardWriter:
    """Writes one `.parquet` shard to a temp name; `close()` renames it into place."""

    extension = "parquet"

    def __init__(self, path: Path, image_ext: str, with_masks: bool, with_class_masks: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.schema = arrow_schema()
        self.rows: list[dict] = []
        self.pending_bytes = 0
        self.count = 0
        # Media bytes are already compressed images: store them plain, compress the rest.
        compression = {name: "snappy" for name in _leaf_paths(self.schema)}
        for col in ("image", "mask", "class_mask"):
            compression[f"{col}.bytes"] = "none"
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression=compression, use_dictionary=True,
                                       write_statistics=True)

    def write(self, record: Record, image: bytes, image_ext: str, mask: bytes | None,
              class_mask: bytes | None = None) -> None:
        nbytes = len(image) + len(mask or b"") + len(class_mask or b"") + 1024
        if self.rows and (self.pending_bytes + nbytes > ROW_GROUP_BYTES or len(self.rows) >= ROW_GROUP_ROWS):
            self._flush()  # close the row group before it would pass a limit
        self.rows.append(record_row(record, image, image_ext, mask, class_mask))
        self.pending_bytes += nbytes
        self.count += 1

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
        self.rows.clear()
        self.pending_bytes = 0

    def close(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _leaf_paths(schema: pa.Schema) -> list[str]:
    def walk(prefix: str, typ: pa.DataType):
        if pa.types.is_struct(typ):
            for f in typ:
                yield from walk(f"{prefix}.{f.name}", f.type)
        elif pa.types.is_list(typ):
            yield from walk(f"{prefix}.list.element", typ.value_type)
        else:
            yield prefix
    return [leaf for field in schema for leaf in walk(field.name, field.type)]


__all__ = ["FEATURES", "ParquetShardWriter"]
