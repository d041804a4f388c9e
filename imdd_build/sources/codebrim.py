"""CODEBRIM, COncrete DEfect BRidge IMage dataset (Mundt et al., CVPR 2019; Zenodo 2620293).

Concrete bridge photos, multi-label: a defect can be at once crack, spallation, efflorescence,
exposed bars and corrosion stain; `Background` marks defect-free regions. Two archives:

* original images (`original_dataset/`): `images/*.jpg` (high resolution) with the annotation either
  as one VOC-like XML per image in `annotations/` (each `<object>` has a `<bndbox>` and a `<Defect>`
  child with one 0/1 element per class), or as `defects.xml` with one `Defect` element per box
  (image name in its `name` attribute, box coordinates and 0/1 flags inside) plus `background.xml`
  listing defect-free images. No official split: seeded per photo;
* classification patches (`classification_dataset/`): `{train,val,test}/{background,defects}/*.png`
  crops (`image_0000001_crop_0000001.png`) with `metadata/{background,defects}.xml`, one element
  per crop with the 0/1 flags; the split folders are the official split. Copies sorted into
  per-class folders (`train/crack/`) are read from the folder name when the metadata has no entry.

Quirks handled (element names are unverified, so matching is tolerant): class element names are
compared case- and separator-insensitively (`ExposedBars`, `exposed_bars`, `Exposed bars`), flags
may be `1`, `1.0` or `true`; the image name comes from the element's `name` attribute (else its first
attribute, else a `filename`/`name`/`image` child); coordinates come from a `bndbox` child or from
`xmin..ymax` children/attributes and are read as inclusive VOC corners; crop names with an
augmentation suffix (`<name>_-_<n>.png`) are looked up without it. A multi-label box becomes one box
per class. An image with no defect flag but listed (background.xml, a background object) is normal;
an image that no annotation mentions, and an unreadable XML, are quarantined.

Paths are relative to the folder above the dataset folder, so pointing at `CODEBRIM/` or at
`CODEBRIM/original_dataset/` gives the same keys.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, is_image, sorted_dirs, sorted_images
from ..sourcekit.search import shallowest

CLASSES = ("Background", "Crack", "Spallation", "Efflorescence", "ExposedBars", "CorrosionStain")
_ALIASES = {"cracks": "Crack", "spalling": "Spallation", "exposedrebar": "ExposedBars",
            "exposedrebars": "ExposedBars", "exposedbar": "ExposedBars", "exposedreinforcement": "ExposedBars",
            "exposedreinforcementbars": "ExposedBars", "corrosion": "CorrosionStain",
            "rust": "CorrosionStain", "ruststain": "CorrosionStain", "normal": "Background"}
PRODUCT = "bridge"
_ALNUM = re.compile(r"[^a-z0-9]+")
_TRUE = {"1", "1.0", "true", "yes"}
_PARENT = re.compile(r"^(image_\d+)_crop_\d+", re.IGNORECASE)


def _fold(name: str) -> str:
    return _ALNUM.sub("", name.lower())


_BY_FOLD = {**{_fold(c): c for c in CLASSES}, **_ALIASES}


def class_of(name: str) -> str | None:
    return _BY_FOLD.get(_fold(name))


class CodebrimXmlError(ValueError):
    pass


@dataclass
class Entry:
    """One annotated element: its flags (class -> 0/1) and box (inclusive corners), if any."""

    flags: dict[str, int] = field(default_factory=dict)
    box: tuple[float, float, float, float] | None = None

    @property
    def defects(self) -> list[str]:
        return [c for c in CLASSES[1:] if self.flags.get(c)]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def read_flags(node: ET.Element) -> dict[str, int]:
    flags: dict[str, int] = {}
    for child in node:
        cls = class_of(_local(child.tag))
        if cls is not None and len(child) == 0:
            flags[cls] = int((child.text or "").strip().lower() in _TRUE)
        elif _fold(_local(child.tag)) in {"defect", "defects", "labels", "label", "classes"} and len(child):
            flags.update(read_flags(child))
    return flags


def read_box(node: ET.Element) -> tuple[float, float, float, float] | None:
    holder = next((c for c in node if _fold(_local(c.tag)) in {"bndbox", "bbox", "box"}), node)
    values = {}
    for key in ("xmin", "ymin", "xmax", "ymax"):
        child = next((c for c in holder if _fold(_local(c.tag)) == key), None)
        text = child.text if child is not None else holder.get(key)
        if text is None or not text.strip():
            return None
        try:
            values[key] = float(text)
        except ValueError:
            raise CodebrimXmlError(f"<{key}> is not a number: {text!r}") from None
    x0, y0, x1, y1 = values["xmin"], values["ymin"], values["xmax"] + 1, values["ymax"] + 1
    if x1 <= x0 or y1 <= y0:
        raise CodebrimXmlError(f"empty box {[values[k] for k in ('xmin', 'ymin', 'xmax', 'ymax')]}")
    return x0, y0, x1, y1


def _entry_name(node: ET.Element) -> str | None:
    name = node.get("name") or (next(iter(node.attrib.values())) if node.attrib else None)
    if not name:
        child = next((c for c in node if _fold(_local(c.tag)) in {"filename", "name", "image", "file"}
                      and c.text and c.text.strip()), None)
        name = child.text if child is not None else None
    return name.strip().replace("\\", "/").rsplit("/", 1)[-1] if name else None


def read_list_xml(path: Path) -> dict[str, list[Entry]]:
    """defects.xml / background.xml: image (or crop) name, lower case -> its entries."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise CodebrimXmlError(f"not readable XML: {exc}") from None
    out: dict[str, list[Entry]] = {}
    for node in root:
        name = _entry_name(node)
        if not name:
            continue
        out.setdefault(name.lower(), []).append(Entry(read_flags(node), read_box(node)))
    return out


def read_voc_like(path: Path) -> list[Entry]:
    """One per-image XML of the original dataset: every `<object>` with its box and flags."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise CodebrimXmlError(f"not readable XML: {exc}") from None
    entries = []
    for obj in root.iter("object"):
        flags = read_flags(obj)
        if not flags:
            name = (obj.findtext("name") or "").strip()
            cls = class_of(name)
            flags = {cls: 1} if cls else {}
        entries.append(Entry(flags, read_box(obj)))
    return entries


def _child_ci(folder: Path, *names: str) -> Path | None:
    dirs = {d.name.lower(): d for d in sorted_dirs(folder)}
    return next((dirs[n] for n in names if n in dirs), None)


def _find_file_ci(folder: Path, name: str) -> Path | None:
    for where in (folder, _child_ci(folder, "metadata", "annotations", "meta")):
        if where is None:
            continue
        hit = next((p for p in sorted(where.iterdir()) if p.is_file() and p.name.lower() == name), None)
        if hit is not None:
            return hit
    return None


def layout_of(folder: Path) -> str | None:
    splits = [d for d in sorted_dirs(folder) if d.name.lower() in SPLIT_MAP and sorted_dirs(d)]
    if splits:
        return "patches"
    if _child_ci(folder, "images", "image", "imgs") and (
            _child_ci(folder, "annotations", "annotation", "xml") or _find_file_ci(folder, "defects.xml")):
        return "original"
    return None


class CodebrimAdapter(SourceAdapter):
    id = "codebrim"
    expected = ("original_dataset/ (images/ with annotations/ or defects.xml) or "
                "classification_dataset/{train,val,test}/<class>/")
    labels = CLASSES

    def find(self) -> list[tuple[Path, str]]:
        """(dataset folder, layout); all found at the shallowest level that has any."""
        found = shallowest(self.root, layout_of, 2)
        if found:
            return found
        raise RootError(f"{self.root}: no CODEBRIM layout found (original_dataset/ with images/ and "
                        "annotations/ or defects.xml, or classification_dataset/ with train/val/test/)")

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.found = self.find()
        return self.found[0][0].parent

    def samples(self) -> Iterator[RawSample | Quarantined]:
        for folder, layout in self.found:
            if layout == "patches":
                yield from self._patches(folder)
            else:
                yield from self._original(folder)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.base).as_posix()

    def _lists(self, folder: Path) -> tuple[dict[str, dict[str, list[Entry]]], list[Quarantined]]:
        """`defects.xml` / `background.xml` of `folder` by stem, and the unreadable ones."""
        lists: dict[str, dict[str, list[Entry]]] = {}
        bad: list[Quarantined] = []
        for stem in ("defects", "background"):
            path = _find_file_ci(folder, f"{stem}.xml")
            if path is None:
                continue
            try:
                lists[stem] = read_list_xml(path)
            except CodebrimXmlError as exc:
                bad.append(Quarantined(source=self.source_id, path=self._rel(path), reason=str(exc)))
        return lists, bad

    def _patches(self, folder: Path) -> Iterator[RawSample | Quarantined]:
        lists, bad = self._lists(folder)
        yield from bad
        for split_dir in sorted_dirs(folder):
            if split_dir.name.lower() not in SPLIT_MAP:
                continue
            for class_dir in sorted_dirs(split_dir):
                folder_class = class_of(class_dir.name)
                for image in sorted_images(class_dir):
                    name = image.name.lower()
                    if "_-_" in image.stem:
                        name = image.stem.lower().split("_-_", 1)[0] + image.suffix.lower()
                    entries = (lists.get(class_dir.name.lower(), {}).get(name)
                               or next((lst[name] for lst in lists.values() if name in lst), None))
                    if entries is None and folder_class is not None:
                        entries = [Entry({folder_class: 1})]
                    m = _PARENT.match(image.stem)
                    attrs = {"parent_image": m.group(1).lower()} if m else {}
                    yield self._sample(image, entries, source_split=split_dir.name, attributes=attrs,
                                       boxes_allowed=False, where=f"metadata/{class_dir.name}.xml")

    def _original(self, folder: Path) -> Iterator[RawSample | Quarantined]:
        images_dir = _child_ci(folder, "images", "image", "imgs")
        ann_dir = _child_ci(folder, "annotations", "annotation", "xml")
        per_image = {}
        if ann_dir is not None:
            per_image = {p.stem.lower(): p for p in sorted(ann_dir.iterdir())
                         if p.is_file() and p.suffix.lower() == ".xml" and not p.name.startswith(".")
                         and p.stem.lower() not in ("defects", "background")}
        lists, bad = self._lists(folder)
        yield from bad
        for image in sorted(p for p in images_dir.rglob("*") if p.is_file() and is_image(p)
                            and not any(part.startswith((".", "__")) for part in p.relative_to(images_dir).parts)):
            entries: list[Entry] | None = None
            xml = per_image.get(image.stem.lower())
            if xml is not None:
                try:
                    entries = read_voc_like(xml)
                except CodebrimXmlError as exc:
                    yield Quarantined(source=self.source_id, path=self._rel(xml), reason=str(exc))
                    continue
            for lst in lists.values():
                hit = lst.get(image.name.lower()) or lst.get(image.stem.lower())
                if hit:
                    entries = (entries or []) + hit
            yield self._sample(image, entries, source_split="", attributes={}, boxes_allowed=True,
                               where="annotations/, defects.xml or background.xml")

    def _sample(self, image: Path, entries: list[Entry] | None, source_split: str, attributes: dict,
                boxes_allowed: bool, where: str) -> RawSample | Quarantined:
        rel = self._rel(image)
        if entries is None:
            return Quarantined(source=self.source_id, path=rel, reason=f"not annotated in {where}")
        labels: list[str] = []
        boxes = []
        background_boxes = 0
        for entry in entries:
            defects = entry.defects
            labels.extend(defects)
            if not defects and entry.box is not None:
                background_boxes += 1
            if boxes_allowed and entry.box is not None:
                boxes.extend((cls, *entry.box) for cls in defects)
        labels = [c for c in CLASSES[1:] if c in labels]
        if background_boxes:
            attributes = {**attributes, "background_boxes": background_boxes}
        if len(labels) > 1:
            attributes = {**attributes, "multi_label": True}
        common = dict(rel_path=rel, product=PRODUCT, source_split=source_split,
                      label="defective" if labels else "normal", source_labels=labels or ["Background"],
                      boxes=boxes, attributes=attributes)
        if source_split:
            return RawSample(**common)
        return RawSample(split=self.seeded(image.stem.lower()), split_origin="seeded", **common)
