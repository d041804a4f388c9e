"""GC10-DET (Lv, Duan, Jiang, Fu, Gan, Sensors 2020): steel sheet surface, 10 classes, VOC boxes.

Native layout (Baidu/Kaggle copies, details unverified): class folders named `1` .. `10` (or
`1_chongkong` .. `10_yaozhe`, or the English class names) holding the gray JPG images
(`img_01_425382900_00001.jpg`), plus a folder of VOC XML files, one per annotated image, spelled
`lable/` (sic) in the original, `label/` or `label/label/` in the Kaggle copy (where the class
folders sit in `images/images/`). Not every image has an XML (about 2,300 of 3,570 do).

The XML object names are pinyin codes with the class number in front: `1_chongkong` (punching
hole), `2_hanfeng` (welding line), `3_yueyawan` (crescent gap), `4_shuiban` (water spot),
`5_youban` (oil spot), `6_siban` (silk spot), `7_yiwu` (inclusion), `8_yahen` (rolled pit),
`9_zhehen` (crease), `10_yaozhe` (waist folding). The class is read from the leading number,
so typo variants such as `10_yaozhed` still map; `source_labels` and box labels always use the
spelling above.

Quirks handled:
* class folders are found anywhere below the root (any depth up to 3) by their name; XML files are
  indexed from every folder named lable/label/labels/annotations/xml below the root, by stem
  (case-insensitive), shallowest copy first;
* the XML is preferred over the folder: its object classes give the labels and boxes; an image
  without XML keeps its folder class and has no boxes (`annotation: folder`);
* when XML and folder disagree, the record keeps the XML labels and notes `folder_class` and
  `label_conflict: true` in its attributes; XML object names without a class number (a known
  corrupt `d`) are dropped and listed in `unknown_xml_labels` (folder class used if nothing is left);
* an XML whose image is in no class folder, and an unreadable XML, are quarantined;
* no official split: seeded, grouped by the image name without its trailing sequence number
  (`img_01_425382900`, assumed to be one coil/camera run; unverified), else by the stem.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_images
from ..sourcekit.vocxml import VocError, parse_voc
from ..sourcekit.search import shallowest

GC10_CLASSES = ("1_chongkong", "2_hanfeng", "3_yueyawan", "4_shuiban", "5_youban", "6_siban", "7_yiwu",
                "8_yahen", "9_zhehen", "10_yaozhe")
ENGLISH = ("punching_hole", "welding_line", "crescent_gap", "water_spot", "oil_spot", "silk_spot",
           "inclusion", "rolled_pit", "crease", "waist_folding")
LABEL_DIRS = {"lable", "label", "labels", "annotations", "annotation", "xml", "xmls"}
PRODUCT = "steel_sheet"
_LEADING = re.compile(r"^\s*(\d+)")
_SEP = re.compile(r"[-_\s]+")
_GROUP = re.compile(r"^(img_\d+_\d+)_\d+$", re.IGNORECASE)


def class_number(name: str) -> int | None:
    """1..10 from `3`, `3_yueyawan`, `10_yaozhed`, `Crescent Gap`, `yueyawan`; None otherwise."""
    m = _LEADING.match(name)
    if m:
        n = int(m.group(1))
        return n if 1 <= n <= 10 else None
    folded = _SEP.sub("_", name.strip().lower())
    for i, (code, english) in enumerate(zip(GC10_CLASSES, ENGLISH), start=1):
        if folded in (english, code.split("_", 1)[1]):
            return i
    return None


def find_class_dirs(root: Path, depth: int = 3) -> list[tuple[int, Path]]:
    """(class number, folder) of every class folder that holds images, shallowest level found."""
    def number(d: Path) -> int | None:
        if d == root or d.name.lower() in LABEL_DIRS:
            return None
        n = class_number(d.name)
        return n if n is not None and sorted_images(d) else None

    found = [(n, d) for d, n in shallowest(root, number, depth)]
    return sorted(found, key=lambda t: (t[0], t[1].as_posix()))


def index_xml(root: Path) -> dict[str, Path]:
    """XML files under label-like folders, by lower-case stem; shallowest first wins."""
    out: dict[str, Path] = {}
    stack = [root]
    found: list[Path] = []
    while stack:
        folder = stack.pop(0)
        for child in sorted(folder.iterdir()):
            if child.name.startswith((".", "__")):
                continue
            if child.is_dir():
                stack.append(child)
            elif child.suffix.lower() == ".xml" and any(p.lower() in LABEL_DIRS for p in
                                                        child.relative_to(root).parts[:-1]):
                found.append(child)
    for xml in sorted(found, key=lambda p: (len(p.parts), p.as_posix())):
        out.setdefault(xml.stem.lower(), xml)
    return out


class GC10Adapter(SourceAdapter):
    id = "gc10"
    expected = "class folders 1 ... 10 of *.jpg with VOC XML files in lable/ or label/"
    labels = GC10_CLASSES

    def __init__(self, root: Path, entry=None, **options):
        super().__init__(root, entry, **options)
        self.class_dirs = find_class_dirs(self.root)
        if not self.class_dirs:
            raise RootError(f"{self.root}: no GC10-DET class folders (1 .. 10) with images found")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        class_dirs = self.class_dirs
        xmls = index_xml(self.root)
        used: set[str] = set()
        for number, folder in class_dirs:
            for image in sorted_images(folder):
                stem = image.stem.lower()
                xml = xmls.get(stem)
                if xml is not None:
                    used.add(stem)
                yield self._sample(image, number, xml)
        for stem, xml in sorted(xmls.items()):
            if stem not in used:
                yield Quarantined(source=self.source_id, path=xml.relative_to(self.root).as_posix(),
                                  reason="annotation has no image in any class folder")

    def _sample(self, image: Path, folder_number: int, xml: Path | None) -> RawSample | Quarantined:
        rel = image.relative_to(self.root).as_posix()
        folder_label = GC10_CLASSES[folder_number - 1]
        attributes: dict = {"folder_class": folder_label}
        boxes: list[tuple[str, float, float, float, float]] = []
        labels: list[str] = []
        if xml is not None:
            try:
                ann = parse_voc(xml)
            except VocError as exc:
                return Quarantined(source=self.source_id, path=xml.relative_to(self.root).as_posix(),
                                   reason=str(exc))
            unknown = []
            for obj in ann.objects:
                n = class_number(obj.name)
                if n is None:
                    unknown.append(obj.name)
                    continue
                boxes.append((GC10_CLASSES[n - 1], *obj.box))
                labels.append(GC10_CLASSES[n - 1])
            labels = list(dict.fromkeys(labels))
            if unknown:
                attributes["unknown_xml_labels"] = unknown
            attributes["annotation"] = "xml"
            if labels and folder_label not in labels:
                attributes["label_conflict"] = True
        if not labels:
            labels = [folder_label]
            attributes["annotation"] = "folder"
        m = _GROUP.match(image.stem)
        group = m.group(1).lower() if m else image.stem.lower()
        return RawSample(rel_path=rel, product=PRODUCT, source_split="", label="defective",
                         source_labels=labels, boxes=boxes, split=self.seeded(group), split_origin="seeded",
                         attributes=attributes)
