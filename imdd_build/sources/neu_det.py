"""NEU surface defect database, detection part (NEU-DET; He, Song, Meng, Yan, IEEE TIM 2020).

1,800 gray 200x200 images of hot-rolled steel strip, 300 per class, six classes: crazing, inclusion,
patches, pitted_surface, rolled-in_scale, scratches. Every image shows a defect (there is no normal
image); each has a Pascal VOC XML with 1..9 boxes (inclusive corners). Two layouts are found:

* the original archive: `NEU-DET/ANNOTATIONS/<class>_<n>.xml` + `NEU-DET/IMAGES/<class>_<n>.jpg`
  (folder names in any case; images may also sit in per-class sub-folders); no split, so we seed
  one per image;
* the Kaggle copy: `NEU-DET/{train,validation}/annotations/*.xml` (flat) +
  `NEU-DET/{train,validation}/images/<class>/*.jpg`; the split folder is the official split.

The root may be `NEU-DET` itself or the folder above it (or a stray copy one more level down); paths
in records are relative to the dataset folder, so keys do not depend on that choice.

Quirks handled:
* class names contain separators (`rolled-in_scale_12`, `pitted_surface_3`): the class is found by
  matching the known class list longest first (case- and `-`/`_`-insensitive), never by splitting;
* the image belonging to an XML is found from the XML *stem* (case-insensitive), never from
  `<filename>`, which can lack the extension or differ in case;
* an XML may sit in the other split's `annotations/` folder (Kaggle copy): the image's own folder
  decides the split and the XML is looked up in its own split first, then in the others;
* an image without XML is still ingested (class from the file name, no boxes, attribute
  `annotation: missing`); an XML without image and an unreadable XML are quarantined;
* the XML object class is the label; when it disagrees with the file-name class, both are kept
  (`name_class` attribute).

The helpers at module level are shared with `neu_cls`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, is_image, sorted_dirs
from ..sourcekit.vocxml import VocError, parse_voc
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import search_below

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
PRODUCT = "steel_strip"
_FOLD = re.compile(r"[-_\s]+")


def fold(name: str) -> str:
    """Lower case with every run of `-`, `_` and blanks as one `_` (for tolerant comparisons)."""
    return _FOLD.sub("_", name.strip().lower())


def neu_class_of(stem: str) -> str | None:
    """The NEU class a file stem starts with (`rolled-in_scale_12` -> `rolled-in_scale`), else None.

    Longest class first, and the class must be followed by a separator, a digit or the end, so that
    neither `_` inside class names nor a shorter class that is a prefix of a longer one can mislead.
    """
    folded = fold(stem)
    for cls in sorted(NEU_CLASSES, key=len, reverse=True):
        key = fold(cls)
        if folded.startswith(key):
            rest = folded[len(key):]
            if not rest or rest[0] == "_" or rest[0].isdigit():
                return cls
    return None


def canonical_class(name: str) -> str | None:
    """A class name as written in XML (`Rolled-in_Scale`, `pitted surface`) -> the NEU spelling."""
    folded = fold(name)
    return next((c for c in NEU_CLASSES if fold(c) == folded), None)


def walk_images(folder: Path) -> Iterator[Path]:
    """Every image under `folder`, sorted, hidden files and `__MACOSX` skipped."""
    if not folder.is_dir():
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith((".", "__")):
            continue
        if child.is_dir():
            yield from walk_images(child)
        elif child.is_file() and is_image(child):
            yield child


def child_ci(folder: Path, *names: str) -> Path | None:
    """The first sub-folder of `folder` whose name equals one of `names`, case-insensitively."""
    wanted = [n.lower() for n in names]
    dirs = {d.name.lower(): d for d in sorted_dirs(folder)}
    return next((dirs[n] for n in wanted if n in dirs), None)


def wanted_classes(options: dict) -> set[str] | None:
    cats = options.get("categories")
    if not cats:
        return None
    out = set()
    for cat in cats:
        cls = canonical_class(cat) or neu_class_of(cat)
        if cls is None:
            raise RootError(f"unknown NEU class {cat!r}; known: {', '.join(NEU_CLASSES)}")
        out.add(cls)
    return out


# -- NEU-DET -----------------------------------------------------------------------------------

def _units(folder: Path) -> list[tuple[str, Path, Path]] | None:
    """(split name or "", annotations dir, images dir) of a NEU-DET dataset folder, else None."""
    ann, img = child_ci(folder, "annotations", "annotation"), child_ci(folder, "images", "image")
    if ann is not None and img is not None:
        return [("", ann, img)]
    units = []
    for split_dir in sorted_dirs(folder):
        if split_dir.name.lower() not in SPLIT_MAP:
            continue
        ann, img = child_ci(split_dir, "annotations", "annotation"), child_ci(split_dir, "images", "image")
        if ann is not None and img is not None:
            units.append((split_dir.name, ann, img))
    return units or None


def find_neu_det(root: Path) -> tuple[Path, list[tuple[str, Path, Path]]]:
    """The dataset folder (root, `NEU-DET` below it, or one level deeper) and its units."""
    # a folder literally called NEU-DET wins over its siblings at the same depth
    found = search_below(root, _units, 2, key=lambda p: (fold(p.name) != "neu_det", p.name))
    if found:
        return found
    raise RootError(f"{root}: no NEU-DET layout found (expected ANNOTATIONS/ + IMAGES/, or "
                    "train|validation/{annotations,images}/, in the root or in NEU-DET/)")


class NeuDetAdapter(SourceAdapter):
    id = "neu_det"
    expected = "ANNOTATIONS/*.xml with IMAGES/*.jpg (or {train,validation}/annotations/ with images/)"
    Options = CategoryOptions
    labels = NEU_CLASSES

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        base, self.units = find_neu_det(self.root)
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        units = self.units
        wanted = wanted_classes(self.options)
        xml_index: list[dict[str, Path]] = []
        for _split, ann_dir, _img in units:
            xml_index.append({p.stem.lower(): p for p in sorted(ann_dir.iterdir())
                              if p.is_file() and p.suffix.lower() == ".xml" and not p.name.startswith(".")})
        used: set[Path] = set()
        seen: dict[str, str] = {}
        for u, (split, _ann, img_dir) in enumerate(units):
            for image in walk_images(img_dir):
                rel = image.relative_to(self.base).as_posix()
                stem = image.stem.lower()
                name_class = neu_class_of(image.stem)
                if wanted is not None and name_class not in wanted:
                    continue
                if stem in seen:
                    yield Quarantined(source=self.source_id, path=rel,
                                      reason=f"duplicate of {seen[stem]} (same file name)")
                    continue
                seen[stem] = rel
                # own split first, then the others (a stray XML in the wrong split)
                order = [u] + [i for i in range(len(units)) if i != u]
                found = next((i for i in order if stem in xml_index[i]), None)
                xml = xml_index[found][stem] if found is not None else None
                item = self._sample(image, rel, split, name_class, xml)
                if found is not None and found != u and isinstance(item, RawSample):
                    item.attributes["annotation_split"] = units[found][0]
                if xml is not None:
                    used.add(xml)
                yield item
        for index in xml_index:
            for xml in index.values():
                if xml in used:
                    continue
                cls = neu_class_of(xml.stem)
                if wanted is not None and cls not in wanted:
                    continue
                yield Quarantined(source=self.source_id, path=xml.relative_to(self.base).as_posix(),
                                  reason="annotation has no image with the same stem")

    def _sample(self, image: Path, rel: str, split: str, name_class: str | None,
                xml: Path | None) -> RawSample | Quarantined:
        attributes: dict = {}
        boxes: list[tuple[str, float, float, float, float]] = []
        labels: list[str] = []
        if xml is not None:
            try:
                ann = parse_voc(xml)
            except VocError as exc:
                return Quarantined(source=self.source_id, path=xml.relative_to(self.base).as_posix(),
                                   reason=f"{exc}")
            for obj in ann.objects:
                cls = canonical_class(obj.name) or neu_class_of(obj.name)
                if cls is None:
                    return Quarantined(source=self.source_id, path=xml.relative_to(self.base).as_posix(),
                                       reason=f"unknown NEU class {obj.name!r} in <object><name>")
                boxes.append((cls, *obj.box))
                labels.append(cls)
        else:
            attributes["annotation"] = "missing"
        labels = list(dict.fromkeys(labels))
        if not labels:
            if name_class is None:
                return Quarantined(source=self.source_id, path=rel,
                                   reason="no annotation and the file name starts with no NEU class")
            labels = [name_class]
        elif name_class is not None and name_class not in labels:
            attributes["name_class"] = name_class
        common = dict(rel_path=rel, product=PRODUCT, label="defective", source_labels=labels,
                      boxes=boxes, attributes=attributes)
        if split:
            return RawSample(source_split=split, **common)
        return RawSample(source_split="", split=self.seeded(image.stem.lower()), split_origin="seeded", **common)
