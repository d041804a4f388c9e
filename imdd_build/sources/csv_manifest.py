"""Generic `csv` adapter: a manifest file listing the user's images, one row per image (or per defect).

The manifest has a header row; column names are matched case-insensitively:
  `path` (also image, file, filename, image_path) - required; the image, relative to the paths base
  `label` (also class)                             - required; see "labels" below
  `mask` (also mask_path)                          - optional; a mask image, relative like `path`
  `split` (also subset)                            - optional; train/val/valid/validation/test...
  `boxes` (also bbox, bboxes)                      - optional; see "boxes" below
  `product`                                        - optional; the product name of the row
  `defect_type` (also defect_types, defect)        - optional; the defect name(s) of the row
Other columns are ignored. The delimiter is `,`, or `;`/tab when the header has no comma
(`--opt delimiter=;` forces one). UTF-8 with or without BOM.

Where the manifest is: `--root` may be the manifest file itself or a folder holding it; in a folder
`--opt manifest=<file>` names it, else `manifest.csv`, `labels.csv`, `annotations.csv`, `dataset.csv`
or the only `*.csv` in the folder is used. Paths are relative to the manifest's folder, or to
`--opt base=<dir>` (itself relative to the manifest's folder); absolute paths inside that base are
accepted. Files are found case-insensitively (`.JPG` vs `.jpg`).

Labels: a normal name (default good, ok, normal, none, pass, no_defect, ..., set with
`--opt normal=...`) or `0` marks a defect-free image; `defective`, `defect`, `anomaly`, `anomalous`,
`bad`, `ng`, `nok`, `ko`, `fail` or `1` mark a defective image whose defect names come from
`defect_type` (several separated by `;` or `|`) and/or the box labels (else it is an unnamed defect);
any other value is itself the defect name (class-per-row manifests).

Boxes, in original pixels with exclusive x1/y1: a JSON list `[["scratch", x0, y0, x1, y1], ...]`
(items may also be `[x0, y0, x1, y1]` or `{"label":..., "x0":...}`), or `x0 y0 x1 y1 label;...` (the
label may be omitted or contain spaces). Unlabelled boxes take the row's defect name.

Several rows with the same path are merged (one row per box is fine): their labels, defect names and
boxes are united; conflicting splits, products or masks, or a normal label next to defects, put the
image in quarantine. Split: rows without a split column or value get a seeded split (grouped by
path, or by `--opt group=<regex>`); an unknown split name quarantines the row.

Quarantined, each with its manifest line number: rows with missing columns or an empty path, a path
outside the base, a missing image or mask, unreadable boxes, an unknown split, a normal row with
boxes or a mask. `--category` filters on the product column. `--opt product=<name>` is the product
of rows without one (default: the --domain, else unknown). JPEG masks are thresholded at 127
(`--opt mask_threshold=N`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci
from ..taxonomy import norm_label
from .folder import mask_files, normal_names, product_of, resolve_option_path, seeded_group, split_name
from ..sourcekit.options import CategoryOptions, Field, GenericOptions, MaskThresholdOptions, Optional

MANIFEST_NAMES = ("manifest.csv", "labels.csv", "annotations.csv", "dataset.csv")
COLUMNS = {
    "path": ("path", "image", "file", "filename", "file_name", "image_path", "img"),
    "label": ("label", "class", "class_name"),
    "mask": ("mask", "mask_path", "mask_file"),
    "split": ("split", "subset", "set"),
    "boxes": ("boxes", "bbox", "bboxes", "box"),
    "product": ("product",),
    "defect_type": ("defect_type", "defect_types", "defect", "defects"),
}
DEFECTIVE_WORDS = {"defective", "defect", "anomaly", "anomalous", "bad", "ng", "nok", "ko", "fail", "failed", "1"}


class RowError(ValueError):
    """A manifest row is unusable; the message says why (the caller adds the line number)."""


@dataclass
class _Item:
    path: str  # as written in the first row
    lines: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    normal_rows: int = 0
    defect_rows: int = 0
    boxes: list[tuple] = field(default_factory=list)
    splits: set[str] = field(default_factory=set)
    products: set[str] = field(default_factory=set)
    masks: set[str] = field(default_factory=set)
    error: str | None = None


def parse_boxes(text: str, default_label: str | None) -> list[tuple]:
    """Boxes cell -> [(label, x0, y0, x1, y1)]; RowError when unreadable."""
    text = (text or "").strip()
    if not text or text in ("[]", "-"):
        return []
    out = []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RowError(f"boxes are not valid JSON: {exc.msg}") from None
        if not isinstance(items, list):
            raise RowError("boxes JSON must be a list")
        if items and all(isinstance(v, (int, float)) for v in items):
            items = [items]  # a single box written without the outer list
        for item in items:
            if isinstance(item, dict):
                item = [item.get("label"), item.get("x0"), item.get("y0"), item.get("x1"), item.get("y1")]
            if not isinstance(item, list) or len(item) not in (4, 5):
                raise RowError(f"box {item!r}: expected [label, x0, y0, x1, y1]")
            label = item[0] if len(item) == 5 else None
            coords = item[1:] if len(item) == 5 else item
            out.append((label, *coords))
    else:
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            tokens = part.split()
            if len(tokens) < 4:
                raise RowError(f"box {part!r}: expected 'x0 y0 x1 y1 label'")
            out.append((" ".join(tokens[4:]) or None, *tokens[:4]))
    boxes = []
    for label, *coords in out:
        try:
            x0, y0, x1, y1 = (float(c) for c in coords)
        except (TypeError, ValueError):
            raise RowError(f"box {coords!r}: coordinates are not numbers") from None
        if x1 <= x0 or y1 <= y0:
            raise RowError(f"box {[x0, y0, x1, y1]}: empty (x1 <= x0 or y1 <= y0)")
        label = str(label).strip() if label not in (None, "") else default_label
        if not label:
            raise RowError(f"box {[x0, y0, x1, y1]} has no label and the row names no defect")
        boxes.append((label, x0, y0, x1, y1))
    return boxes


class CsvAdapter(SourceAdapter):
    id = "csv"
    expected = "a CSV manifest with path and label columns naming existing images"

    class Options(GenericOptions, MaskThresholdOptions, CategoryOptions):
        manifest: Optional[str] = Field(None, description="The manifest CSV (default: manifest.csv, labels.csv, "
                                                          "annotations.csv, dataset.csv or the only *.csv).")
        base: Optional[str] = Field(None, description="Folder the manifest's paths are relative to (relative to "
                                                      "the manifest's folder).")
        delimiter: Optional[str] = Field(None, description="Column delimiter (default: sniffed).")

    generic = True
    annotation_kinds = ("class", "boxes", "mask")
    root_is_dir = False

    def manifest(self) -> Path:
        given = self.options.get("manifest")
        if self.root.is_file():
            return self.root
        if given:
            path = resolve_option_path(self, given)
            if not path.is_file():
                raise RootError(f"{path}: manifest not found (--opt manifest={given})")
            return path
        for name in MANIFEST_NAMES:
            found = resolve_ci(self.root, name)
            if found is not None and found.is_file():
                return found
        csvs = sorted(p for p in self.root.iterdir() if p.is_file() and p.suffix.lower() == ".csv"
                      and not p.name.startswith("."))
        if len(csvs) == 1:
            return csvs[0]
        if not csvs:
            raise RootError(f"{self.root}: no manifest (*.csv) found; name it with --opt manifest=<file>")
        raise RootError(f"{self.root}: several CSV files ({', '.join(p.name for p in csvs)}); "
                        "choose one with --opt manifest=<file>")

    def locate(self) -> Path:
        """The folder manifest paths are relative to (`--opt base=`, else the manifest's folder)."""
        folder = self.manifest().parent
        base = resolve_option_path(self, self.options["base"], folder) if self.options.get("base") else folder
        if not base.is_dir():
            raise RootError(f"{base}: paths base folder not found")
        return base.resolve()

    def samples(self) -> Iterator[RawSample | Quarantined]:
        manifest = self.manifest()
        name = os.path.relpath(manifest.resolve(), self.base).replace(os.sep, "/")
        normals = normal_names(self.options)
        wanted = set(self.options.get("categories") or [])
        default_product = product_of(self)
        items: dict[str, _Item] = {}

        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=self._delimiter(manifest))
            header = next(reader, None)
            if not header:
                raise RootError(f"{manifest}: empty manifest (a header row is required)")
            cols = self._columns(manifest, header)
            for line, row in enumerate(reader, start=2):
                if not any(cell.strip() for cell in row):
                    continue
                try:
                    cell = self._cells(row, cols, len(header))
                    product = cell("product") or default_product
                    if wanted and product not in wanted:
                        continue
                    path = cell("path")
                    if not path:
                        raise RowError("empty path")
                    key = self._normpath(path)
                    if key == "..":
                        raise RowError(f"path {path!r} is outside the base folder {self.base}")
                    item = items.setdefault(key, _Item(path))
                except RowError as exc:
                    yield Quarantined(source=self.source_id, path=f"{name}:{line}", reason=f"{name} line {line}: {exc}")
                    continue
                try:
                    self._add_row(item, cell, product, normals)
                except RowError as exc:
                    item.error = item.error or f"{name} line {line}: {exc}"
                item.lines.append(line)

        for key, item in items.items():
            first = item.lines[0] if item.lines else 0
            where = f"{name} line{'s' if len(item.lines) > 1 else ''} {', '.join(map(str, item.lines))}"
            problem = item.error or self._conflict(item, where)
            image = None if problem else self._find(key)
            if not problem and image is None:
                problem = f"listed in {name} line {first} but not found"
            if problem:
                yield Quarantined(source=self.source_id, path=key, reason=problem)
                continue
            mask_rel = None
            if item.masks:
                mask_key = self._normpath(next(iter(item.masks)))
                found = self._find(mask_key) if mask_key != ".." else None
                if found is None:
                    yield Quarantined(source=self.source_id, path=key,
                                      reason=f"mask {mask_key} ({where}) not found")
                    continue
                mask_rel = found.relative_to(self.base).as_posix()
            rel = image.relative_to(self.base).as_posix()
            defective = item.defect_rows > 0
            split = next(iter(item.splits)) if item.splits else ""
            sample = RawSample(
                rel_path=rel, product=next(iter(item.products)), source_split=split,
                label="defective" if defective else "normal",
                source_labels=list(dict.fromkeys(item.labels)) if defective else list(dict.fromkeys(item.labels))[:1],
                mask=mask_files(self, [mask_rel]) if mask_rel else None, boxes=item.boxes,
            )
            if split:
                sample.split = split_name(split)
            else:
                sample.split, sample.split_origin = self.seeded(seeded_group(self, rel)), "seeded"
            yield sample

    # -- rows --------------------------------------------------------------------------------------
    def _delimiter(self, manifest: Path) -> str:
        given = self.options.get("delimiter")
        if given:
            return {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ","}.get(str(given), str(given))
        with manifest.open(encoding="utf-8-sig") as fh:
            first = fh.readline()
        if "," not in first:
            for candidate in ("\t", ";", "|"):
                if candidate in first:
                    return candidate
        return ","

    @staticmethod
    def _columns(manifest: Path, header: list[str]) -> dict[str, int]:
        lowered = [h.strip().lower() for h in header]
        cols = {}
        for name, aliases in COLUMNS.items():
            idx = next((lowered.index(a) for a in aliases if a in lowered), None)
            if idx is not None:
                cols[name] = idx
        missing = [c for c in ("path", "label") if c not in cols]
        if missing:
            raise RootError(f"{manifest}: the header needs columns path and label (missing {', '.join(missing)}; "
                            f"found {', '.join(h.strip() for h in header)})")
        return cols

    @staticmethod
    def _cells(row: list[str], cols: dict[str, int], width: int):
        if len(row) > width:
            raise RowError(f"{len(row)} columns, the header has {width} (an unquoted delimiter?)")
        if len(row) < width and max(cols.values()) >= len(row):
            raise RowError(f"{len(row)} columns, the header has {width}")

        def cell(name: str) -> str:
            idx = cols.get(name)
            return row[idx].strip() if idx is not None and idx < len(row) else ""
        return cell

    def _add_row(self, item: _Item, cell, product: str, normals: set[str]) -> None:
        label = cell("label")
        if not label:
            raise RowError("empty label")
        names = [n.strip() for n in re.split(r"[;|]", cell("defect_type")) if n.strip()]
        is_normal_row = label == "0" or norm_label(label) in normals
        if is_normal_row:
            if cell("boxes") or cell("mask") or names:
                raise RowError(f"label {label!r} is normal but the row has boxes, a mask or a defect type")
            item.normal_rows += 1
            item.labels.append(label)
        else:
            generic = label.strip().lower() in DEFECTIVE_WORDS
            own = [] if generic else [label]
            boxes = parse_boxes(cell("boxes"), (names or own or [None])[0])
            item.defect_rows += 1
            item.labels.extend([*own, *names, *(b[0] for b in boxes)])
            item.boxes.extend(boxes)
        split = cell("split")
        if split:
            if split_name(split) is None:
                raise RowError(f"unknown split {split!r} (train, val/valid/validation or test)")
            item.splits.add(split)
        item.products.add(product)
        if cell("mask"):
            item.masks.add(cell("mask"))

    @staticmethod
    def _conflict(item: _Item, where: str) -> str | None:
        if item.normal_rows and item.defect_rows:
            return f"{where}: the image is listed both as normal and as defective"
        for what, values in (("splits", item.splits), ("products", item.products), ("masks", item.masks)):
            if len(values) > 1:
                return f"{where}: conflicting {what} {sorted(values)}"
        return None

    def _normpath(self, path: str) -> str:
        """A manifest path as a posix path relative to the base; `..` when it leaves the base."""
        path = path.replace("\\", "/")
        p = Path(path)
        if p.is_absolute():
            try:
                path = p.resolve().relative_to(self.base).as_posix()
            except ValueError:
                return ".."
        norm = os.path.normpath(path).replace(os.sep, "/")
        return ".." if norm == ".." or norm.startswith("../") else norm

    def _find(self, rel: str) -> Path | None:
        found = resolve_ci(self.base, rel)
        return found if found is not None and found.is_file() else None


__all__ = ["CsvAdapter", "parse_boxes"]
