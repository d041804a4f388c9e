"""Generic `voc` adapter: Pascal VOC style detection data (`Annotations/*.xml` + `JPEGImages/`).

Layout: a VOC folder holds `Annotations/` (one XML per image) and `JPEGImages/` (the images; also
accepted: `images/`, `Images/`, `JPEGImage/`), folder names in any case. The root may be that folder
or hold several of them up to two levels down (`VOCdevkit/VOC2007`, `VOCdevkit/VOC2012`); each is
read and record paths stay relative to the root. `--opt annotations=<dir>` and `--opt images=<dir>`
(relative to the root) name the two folders of a single non-standard layout.

Pairing: every image of the images folder (recursively, any image extension, any case) is a sample;
its XML is `Annotations/<same relative path>.xml` (else `<stem>.xml`). An image without XML, or with
an XML that has no `<object>`, is normal. An XML without its image (looked up by `<filename>`, then
by the XML's stem with any image extension) is quarantined. Objects whose `<name>` is a normal name
(good, ok, ... `--opt normal=`) carry no box; an image with only such objects is normal.

Boxes: `<bndbox>` corners are inclusive pixel indices as in the VOC devkit (x1 + 1 is the exclusive
edge); `--opt inclusive=false` for tools that write exclusive corners. Float coordinates are fine.
Difficult objects are kept (their number is in the source attributes, `difficult`). An XML that
cannot be parsed, or an object with an empty or incomplete box, quarantines its image.

Masks (optional): `SegmentationClass/<stem>.png` (palette class indices; 0 background and 255 the
"void" border are not defect) or `SegmentationObject/` when present. The class mask names each
SegmentationClass index by `labelmap.txt` (CVAT/VOC export: `name:r,g,b::` per line, background
first) when present; an image whose objects are all of one class gets that class either way.

Splits: `ImageSets/Main/{train,val,test}.txt` (also `trainval.txt`, used for ids in no train/val
list, as train) list image ids; a listed id without image is quarantined with its list and line; an
id in two lists quarantines the image; images in no list, or all images when there are no lists,
get seeded splits (grouped by path, or by `--opt group=<regex>`). `--opt product=<name>` sets the
product (default: the --domain, else unknown).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import IMAGE_EXTS, RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs
from .folder import is_normal, normal_names, opt_bool, product_of, resolve_option_path, seeded_group, walk_images
from ..sourcekit.masks import ClassIndexMask, MaskFiles
from ..sourcekit.vocxml import VocError, parse_voc
from ..sourcekit.options import Field, GenericOptions, Optional

IMAGE_DIRS = ("jpegimages", "jpegimage", "images", "imgs")
SPLIT_LISTS = (("train", "train"), ("val", "validation"), ("test", "test"))


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    dirs = {d.name.lower(): d for d in sorted_dirs(folder)}
    return next((dirs[n] for n in names if n in dirs), None)


class VocAdapter(SourceAdapter):
    id = "voc"
    expected = "Annotations/*.xml with the images in JPEGImages/"

    class Options(GenericOptions):
        annotations: Optional[str] = Field(None, description="The XML folder (default: Annotations).")
        images: Optional[str] = Field(None, description="The images folder (default: JPEGImages).")
        inclusive: bool = Field(True, description="Box corners are inclusive pixel indices (VOC convention).")

    generic = True
    annotation_kinds = ("boxes", "class", "mask")

    def voc_folders(self) -> list[tuple[Path, Path, Path]]:
        """(voc folder, Annotations folder, images folder) of every VOC folder under the root."""
        if self.options.get("annotations") or self.options.get("images"):
            ann = resolve_option_path(self, self.options.get("annotations") or "Annotations")
            img = resolve_option_path(self, self.options.get("images") or "JPEGImages")
            for what, path in (("annotations", ann), ("images", img)):
                if not path.is_dir():
                    raise RootError(f"{path}: {what} folder not found")
            return [(self.root, ann, img)]
        found = []
        level = [self.root]
        for _depth in range(3):
            nxt = []
            for folder in level:
                ann, img = _child(folder, ("annotations",)), _child(folder, IMAGE_DIRS)
                if ann is not None and img is not None:
                    found.append((folder, ann, img))
                else:
                    nxt += sorted_dirs(folder)
            if found:
                return found
            level = nxt
        raise RootError(f"{self.root}: no VOC folder (Annotations/ and JPEGImages/) found within two levels")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        normals = normal_names(self.options)
        inclusive = opt_bool(self.options.get("inclusive"), True)
        product = product_of(self)
        for voc, ann_dir, img_dir in self.voc_folders():
            yield from self._folder(voc, ann_dir, img_dir, normals, inclusive, product)

    def _folder(self, voc: Path, ann_dir: Path, img_dir: Path, normals: set[str], inclusive: bool,
                product: str) -> Iterator[RawSample | Quarantined]:
        images = walk_images(img_dir)
        by_id = {}
        for image in images:
            image_id = image.relative_to(img_dir).with_suffix("").as_posix()
            by_id.setdefault(image_id.lower(), image)
            by_id.setdefault(image.stem.lower(), image)
        xmls = {}
        for xml in sorted(p for p in ann_dir.rglob("*") if p.is_file() and p.suffix.lower() == ".xml"
                          and not any(part.startswith(".") or part == "__MACOSX"
                                      for part in p.relative_to(ann_dir).parts)):
            xmls.setdefault(xml.relative_to(ann_dir).with_suffix("").as_posix().lower(), xml)
        paired: dict[Path, Path] = {}
        for xml_id, xml in xmls.items():
            image = by_id.get(xml_id) or self._image_from_filename(xml, img_dir)
            if image is None:
                yield Quarantined(source=self.source_id, path=self._rel(xml),
                                  reason=f"annotation without image: no {xml.stem}.<image ext> in {img_dir.name}/")
                continue
            paired.setdefault(image, xml)

        splits, problems = self._split_lists(voc, by_id)
        for item in problems:
            yield item
        seg_dir = _child(voc, ("segmentationclass",)) or _child(voc, ("segmentationobject",))
        seg = {p.stem.lower(): p for p in walk_images(seg_dir)} if seg_dir is not None else {}
        class_names = read_labelmap(voc) if seg_dir is not None and seg_dir.name.lower() == "segmentationclass" else {}
        for image in images:
            rel = self._rel(image)
            xml = paired.get(image)
            objects, difficult = [], 0
            if xml is not None:
                try:
                    ann = parse_voc(xml, inclusive=inclusive)
                except VocError as exc:
                    yield Quarantined(source=self.source_id, path=rel, reason=f"{self._rel(xml)}: {exc}")
                    continue
                objects = [o for o in ann.objects if not is_normal(o.name, normals)]
                normal_objects = [o.name for o in ann.objects if is_normal(o.name, normals)]
                difficult = sum(o.difficult for o in objects)
            else:
                normal_objects = []
            split = splits.get(image)
            if split == "conflict":
                yield Quarantined(source=self.source_id, path=rel,
                                  reason="listed in more than one ImageSets/Main split list")
                continue
            defective = bool(objects)
            mask_file = seg.get(image.stem.lower()) if defective else None
            sample = RawSample(
                rel_path=rel, product=product, source_split=split[0] if split else "",
                label="defective" if defective else "normal",
                source_labels=list(dict.fromkeys(o.name for o in objects)) if defective
                else list(dict.fromkeys(normal_objects)),
                boxes=[(o.name, *o.box) for o in objects],
                mask=_voc_mask(self._rel(mask_file), class_names, objects) if mask_file else None,
                attributes={"difficult": difficult} if difficult else {},
            )
            if split:
                sample.split = split[1]
            else:
                sample.split, sample.split_origin = self.seeded(seeded_group(self, rel)), "seeded"
            yield sample

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @staticmethod
    def _image_from_filename(xml: Path, img_dir: Path) -> Path | None:
        try:
            filename = parse_voc(xml).filename
        except VocError:
            filename = None
        if filename:
            found = resolve_ci(img_dir, filename)
            if found is not None and found.is_file():
                return found
        for ext in sorted(IMAGE_EXTS):
            found = resolve_ci(img_dir, xml.stem + ext)
            if found is not None and found.is_file():
                return found
        return None

    def _split_lists(self, voc: Path, by_id: dict[str, Path]):
        """({image: (list name, our split) or "conflict"}, [Quarantined for listed ids without image])."""
        main = resolve_ci(voc, "ImageSets/Main")
        out: dict[Path, object] = {}
        problems = []
        if main is None or not main.is_dir():
            return out, problems
        lists = {p.stem.lower(): p for p in main.iterdir() if p.is_file() and p.suffix.lower() == ".txt"}
        for name, ours in [*SPLIT_LISTS, ("trainval", "train")]:
            path = lists.get(name)
            if path is None:
                continue
            for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                tokens = line.split()
                if not tokens:
                    continue
                image = by_id.get(tokens[0].lower())
                if image is None:
                    where = f"{self._rel(path)} line {line_no}"
                    problems.append(Quarantined(source=self.source_id, path=f"{self._rel(path)}:{line_no}",
                                                reason=f"{where}: image {tokens[0]!r} not found"))
                    continue
                if name == "trainval" or out.get(image) == "conflict":
                    out.setdefault(image, (path.stem, ours))
                elif image in out and out[image][0] != path.stem:
                    out[image] = "conflict"
                else:
                    out[image] = (path.stem, ours)
        return out, problems


__all__ = ["VocAdapter"]


def read_labelmap(voc: Path) -> dict[int, str]:
    """`labelmap.txt` (one `name:color:parts:actions` line per class index, `#` comments): index -> name."""
    path = resolve_ci(voc, "labelmap.txt")
    if path is None or not path.is_file():
        return {}
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    names = [ln.split(":", 1)[0].strip() for ln in lines if ln and not ln.startswith("#")]
    return {i: name for i, name in enumerate(names) if i > 0 and name}


def _voc_mask(rel: str, class_names: dict[int, str], objects) -> MaskFiles | ClassIndexMask:
    values = list(range(1, 255))
    kinds = list(dict.fromkeys(o.name for o in objects))
    if class_names or len(kinds) == 1:
        return ClassIndexMask(rel, class_names, values=values, fallback=kinds[0] if len(kinds) == 1 else None)
    return MaskFiles([rel], values=values)  # several classes, indices unnamed: no class mask
