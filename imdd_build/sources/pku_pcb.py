"""PKU-Market-PCB (Huang, Wei, arXiv:1901.08204, 2019). License unstated (research).

Native layout (official archive and the Kaggle mirror `akhatova/pcb-defects`):
`PCB_DATASET/images/<Class>/<NN>_<class>_<k>.jpg`, Pascal VOC boxes in
`PCB_DATASET/Annotations/<Class>/<same stem>.xml`, defect-free boards in `PCB_DATASET/PCB_USED/<NN>.JPG`,
and rotated copies in `PCB_DATASET/rotation/<Class>_rotation/`. Classes: Missing_hole, Mouse_bite,
Open_circuit, Short, Spur, Spurious_copper; XML object names are the lower-case snake forms.

Quirks handled:
* image and XML are paired by class folder and stem, case-insensitively (`.jpg`/`.JPG`); an image
  without its XML, or with an unreadable one, is quarantined;
* source labels are the XML object names (falling back to the class folder when the XML has no
  object); boxes are VOC inclusive corners (x1 + 1 is the exclusive edge);
* `PCB_USED/` templates are ingested as normal samples (source label `PCB_USED`);
* the rotated copies are near-duplicates of the originals: skipped unless `--opt rotation=true`;
  then they are defective with the class of their folder, boxes only when a same-stem XML is found
  next to them or in a rotation annotation folder;
* no official split: a seeded split grouped by board number (the leading `NN_` of a file name, the
  stem of a template), so a board's defective images and its template share a split;
* the root may be the folder holding `PCB_DATASET/` or `PCB_DATASET/` itself; paths are relative to
  `PCB_DATASET/`'s parent. `--category` keeps only the named class folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.vocxml import VocError, parse_voc
from ..sourcekit.options import CategoryOptions, Field

CLASSES = ("Missing_hole", "Mouse_bite", "Open_circuit", "Short", "Spur", "Spurious_copper")
TEMPLATE = "PCB_USED"
_BOARD = re.compile(r"^(\d+)")


def board_of(stem: str) -> str:
    m = _BOARD.match(stem)
    return m.group(1).lstrip("0") or "0" if m else stem.lower()


def _child(parent: Path, name: str) -> Path | None:
    return next((d for d in sorted_dirs(parent) if d.name.lower() == name.lower()), None)


def _xml_index(folder: Path | None) -> dict[str, Path]:
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem.lower(): p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() == ".xml" and not p.name.startswith(".")}


class PKUPCBAdapter(SourceAdapter):
    id = "pku_pcb"
    expected = "PCB_DATASET/images/<Class>/*.jpg with Annotations/<Class>/*.xml, and PCB_USED/*.JPG"

    class Options(CategoryOptions):
        rotation: bool = Field(False, description="Also ingest the rotated copies.")

    labels = (*CLASSES, TEMPLATE)

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.data = self._dataset_dir()
        return self.data.parent

    def _dataset_dir(self) -> Path:
        if _child(self.root, "images") is not None:
            return self.root
        found = _child(self.root, "PCB_DATASET")
        if found is not None and _child(found, "images") is not None:
            return found
        raise RootError(f"{self.root}: no images/ folder (expected PCB_DATASET/images/<Class>/)")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        data = self.data
        wanted = {c.lower() for c in self.options.get("categories") or []}
        annotations = _child(data, "Annotations")
        for cls in sorted_dirs(_child(data, "images")):
            if wanted and cls.name.lower() not in wanted:
                continue
            xmls = _xml_index(_child(annotations, cls.name) if annotations else None)
            for image in sorted_images(cls):
                yield self._sample(image, cls.name, xmls.get(image.stem.lower()), required=True)
        if self.options.get("rotation", False) in (True, "true", "yes", 1):
            yield from self._rotation(data, wanted)
        used = _child(data, TEMPLATE)
        if used is not None and not wanted:
            for image in sorted_images(used):
                yield RawSample(
                    rel_path=image.relative_to(self.base).as_posix(), product="pcb", source_split="",
                    label="normal", source_labels=[TEMPLATE], split=self.seeded(board_of(image.stem)),
                    split_origin="seeded", attributes={"board": board_of(image.stem)},
                )

    def _rotation(self, data: Path, wanted: set[str]) -> Iterator[RawSample | Quarantined]:
        rotation = _child(data, "rotation")
        if rotation is None:
            return
        for folder in sorted_dirs(rotation):
            cls = re.sub(r"[_\- ]?rotat(ion|ed)$", "", folder.name, flags=re.I)
            if cls.lower() not in {c.lower() for c in CLASSES}:
                continue
            if wanted and cls.lower() not in wanted:
                continue
            xmls = _xml_index(folder)
            for sub in sorted_dirs(folder):
                xmls = {**_xml_index(sub), **xmls}
            extra = _child(_child(rotation, "Annotations") or rotation, folder.name)
            xmls = {**_xml_index(extra), **xmls}
            for image in sorted_images(folder):
                sample = self._sample(image, cls, xmls.get(image.stem.lower()), required=False)
                if isinstance(sample, RawSample):
                    sample.attributes["rotated"] = True
                yield sample

    def _sample(self, image: Path, cls: str, xml: Path | None, required: bool) -> RawSample | Quarantined:
        rel = image.relative_to(self.base).as_posix()
        boxes, names = [], []
        if xml is None and required:
            return Quarantined(source=self.source_id, path=rel,
                               reason=f"annotation Annotations/{cls}/{image.stem}.xml not found")
        if xml is not None:
            try:
                ann = parse_voc(xml)
            except VocError as exc:
                return Quarantined(source=self.source_id, path=rel,
                                   reason=f"annotation {xml.relative_to(self.base).as_posix()}: {exc}")
            boxes = [(o.name, *o.box) for o in ann.objects]
            names = [o.name for o in ann.objects]
        board = board_of(image.stem)
        return RawSample(
            rel_path=rel, product="pcb", source_split="", label="defective",
            source_labels=list(dict.fromkeys(names)) or [cls], boxes=boxes,
            split=self.seeded(board), split_origin="seeded", attributes={"board": board},
        )
