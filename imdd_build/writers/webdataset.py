"""WebDataset tar shards: every sample has the same members (image, optional mask.png and
class_mask.png, json, txt).

The image member has one extension for the whole output (HF `datasets` infers a tar's features from
its first samples and wants the same members in each), but its bytes are the stored ones whatever
that extension: both `datasets` and `webdataset` pick the decoder by the extension and decode by
content, so a PNG under `.jpg` loads as the PNG it is (`image_format` in the `.json` says which).

Written with `tarfile` and fixed member metadata (mtime 0, root owner, mode 0444) so that the same
records give byte-identical tars; written to a temp name and renamed on close.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from ..record import Record


class WebDatasetShardWriter:
    extension = "tar"

    def __init__(self, path: Path, image_ext: str, with_masks: bool, with_class_masks: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.image_ext = image_ext
        self.with_masks = with_masks
        self.with_class_masks = with_class_masks
        self.count = 0
        self.tar = tarfile.open(self.tmp, "w", format=tarfile.GNU_FORMAT)

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self.tar.addfile(info, io.BytesIO(data))

    def write(self, record: Record, image: bytes, image_ext: str, mask: bytes | None,
              class_mask: bytes | None = None) -> None:
        if image_ext != self.image_ext:
            raise ValueError(f"{record.key}: image is .{image_ext}, shard expects .{self.image_ext}")
        self._add(f"{record.key}.{image_ext}", image)
        if self.with_masks:
            if mask is None:
                raise ValueError(f"{record.key}: every sample of a masked shard needs a mask")
            self._add(f"{record.key}.mask.png", mask)
        if self.with_class_masks:
            if class_mask is None:
                raise ValueError(f"{record.key}: every sample of a class-masked shard needs a class mask")
            self._add(f"{record.key}.class_mask.png", class_mask)
        meta = json.dumps(record.shard_metadata(), sort_keys=True, ensure_ascii=False).encode()
        self._add(f"{record.key}.json", meta)
        self._add(f"{record.key}.txt", (record.caption or "").encode())
        self.count += 1

    def close(self) -> None:
        self.tar.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.tar.close()
        self.tmp.unlink(missing_ok=True)


def webdataset_features(image_ext: str, with_masks: bool, with_class_masks: bool) -> list[dict]:
    """The members as `datasets` features, in the YAML form of a dataset README's `dataset_info`.

    Declared, they spare `datasets` inferring the `.json` schema from a tar's first samples (which
    fails when a field is null in all of those and set later, and drops keys first seen later):
    the metadata is one `Json` column that loads as the same dict the `.json` member holds."""
    members = [(image_ext, "image")]
    members += [("mask.png", "image")] if with_masks else []
    members += [("class_mask.png", "image")] if with_class_masks else []
    members += [("json", "json"), ("txt", "string"), ("__key__", "string"), ("__url__", "string")]
    return [{"name": name, "dtype": dtype} for name, dtype in members]

