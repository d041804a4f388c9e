"""Generic `coco` adapter: images with a COCO "instances" JSON (detection and/or segmentation).

Annotation files: `--opt annotations=<file>[,<file>...]` (relative to the root or absolute), else
every COCO JSON found in `<root>/annotations/`, else in the root, else one folder down (the Roboflow
export `train/_annotations.coco.json`). A JSON counts as COCO when it has `images`, `annotations`
and `categories` lists; others (captions, stray JSON) are ignored.

Splits: a split name in the JSON's file name (`instances_train2017.json`, `val.json`,
`instances_valid.json`) or in its folder's name (`train/_annotations.coco.json`) gives the split of
its images (train/val/valid/validation/test, digits after the name allowed); a JSON without one gets
seeded splits (grouped by image path, or by `--opt group=<regex>`).

Images folder: `--opt images=<dir>` (relative to the root, or absolute), else the first of these
holding the JSON's first images: `<root>/<split name as written>`, `<root>/images/<split>`,
`<root>/images`, the JSON's folder, its parent, the root. An image is its `file_name` under that
folder, else its base name there, found case-insensitively. Listed images that are not there are
quarantined. Paths in records are relative to the root (or to the common folder of the root and the
given images folder when that lies outside).

Annotations:
* `segmentation` as polygons (list of flat lists), uncompressed RLE (`counts` a list) or compressed
  RLE (`counts` a string, COCO's 6-bit variable-length, delta-coded format, decoded here); RLE is
  column-major with its own `size` [h, w] that must match the image. All of an image's segmentations
  are OR-ed into one mask (`CocoMask`). An image where some annotations have no segmentation gets
  no mask (boxes only), so a mask never hides a defect;
* `bbox` [x, y, w, h] -> a box (x, y, x + w, y + h); an annotation without a usable bbox gets the
  extent of its polygons (RLE-only ones: boxes come from the mask when the image has no box at all);
* category names are the source labels; an annotation with an unknown `category_id` quarantines
  its image; categories whose name is a normal name (good, ok, ... `--opt normal=`) mark normal
  images and carry no box;
* `iscrowd: 1` regions are kept like the others (`--opt crowd=ignore` drops them); the number of
  crowd regions is kept in the record's source attributes (`crowd_regions`);
* images without annotations are normal.
Annotations that point to an image id not in `images` are reported (quarantined under the JSON's
name). `--opt product=<name>` sets the product (default: the --domain, else unknown).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..normalize import SampleError
from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs
from .folder import is_normal, normal_names, opt_list, product_of, resolve_option_path, seeded_group, split_name
from ..sourcekit.masks import MaskSource, PolygonMask, _digest, polygon_layers, stack_classes
from ..sourcekit.options import Field, GenericOptions, Literal, Optional, field_validator


def decode_rle_string(counts: str) -> list[int]:
    """COCO compressed RLE counts (maskApi.c `rleFrString`): 5 bits per char (offset 48), a
    continuation bit 0x20, sign extension from bit 0x10, and counts after the second stored as the
    difference to the count two places before."""
    out: list[int] = []
    pos, n = 0, len(counts)
    while pos < n:
        value, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise SampleError("compressed RLE ends in the middle of a number")
            c = ord(counts[pos]) - 48
            if c < 0 or c > 63:
                raise SampleError(f"compressed RLE has an invalid character {counts[pos]!r}")
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(out) > 2:
            value += out[-2]
        out.append(value)
    return out


def encode_rle_string(counts: list[int]) -> str:
    """The inverse of `decode_rle_string` (maskApi.c `rleToString`); used by tests and tools."""
    chars = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def rle_to_mask(counts: list[int] | str, height: int, width: int) -> np.ndarray:
    """COCO RLE (alternating background/foreground run lengths, column-major) -> bool (h, w)."""
    runs = decode_rle_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs):
        raise SampleError("RLE has a negative run length")
    total = height * width
    if sum(runs) != total:
        raise SampleError(f"RLE covers {sum(runs)} pixels, its size {width}x{height} has {total}")
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((height, width), order="F")


@dataclass
class CocoMask(MaskSource):
    """The union of an image's COCO segmentations: polygons (original pixels) and RLEs.

    `rles` are {"size": [h, w], "counts": list or compressed string}.
    """

    polygons: list[list[float]] = field(default_factory=list)
    rles: list[dict] = field(default_factory=list)
    polygon_labels: list[str] | None = None  # the category of each polygon
    rle_labels: list[str] | None = None  # the category of each RLE

    def _rle(self, rle: dict, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        rh, rw = (int(v) for v in rle["size"])
        if (rw, rh) != (w, h):
            raise SampleError(f"RLE size {rw}x{rh} does not match image size {w}x{h}")
        return rle_to_mask(rle["counts"], rh, rw)

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        mask = PolygonMask(self.polygons).load(base, size, max_pixels) > 0
        for rle in self.rles:
            mask |= self._rle(rle, size)
        return mask.astype(np.uint8) * 255

    def load_classes(self, base: Path, size: tuple[int, int], max_pixels: int) -> tuple[np.ndarray, list[str]] | None:
        if self.polygon_labels is None or self.rle_labels is None:
            return None
        layers = polygon_layers(self.polygon_labels, self.polygons, size)
        layers += [(label, self._rle(rle, size)) for label, rle in zip(self.rle_labels, self.rles)]
        return stack_classes(layers, (size[1], size[0]))

    def fingerprint(self, base: Path) -> str:
        labels = {"labels": [self.polygon_labels, self.rle_labels]} if self.polygon_labels is not None else {}
        return _digest({"polygons": self.polygons, "rles": self.rles, **labels})

    def describe(self) -> str | None:
        return f"coco:{len(self.polygons)} polygons, {len(self.rles)} RLE"


def _is_coco(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        return data
    return None


def _split_of_json(path: Path) -> tuple[str, str | None]:
    """(source split as written, our split) from the file name's tokens, else its folder's name."""
    tokens = [t for t in path.name.split(".")[0].replace("-", "_").split("_") if t]
    for token in [*tokens, path.parent.name]:
        ours = split_name(token)
        if ours:
            return token, ours
    return "", None


class CocoAdapter(SourceAdapter):
    id = "coco"
    expected = "images named by a COCO instances JSON (annotations/*.json, or --opt annotations=FILE)"

    class Options(GenericOptions):
        annotations: Optional[list[str]] = Field(None, description="Annotation file(s), relative to the root or "
                                                                   "absolute (default: found under the root).")
        images: Optional[str] = Field(None, description="The images folder (default: found under the root).")
        crowd: Literal["include", "ignore"] = Field("include", description="iscrowd regions: kept or dropped.")

        @field_validator("annotations", mode="before")
        @classmethod
        def _files(cls, value):
            return value if value is None or isinstance(value, list) else [v for v in str(value).split(",") if v]

    generic = True
    annotation_kinds = ("mask", "boxes", "class")

    def annotation_files(self) -> list[tuple[Path, dict]]:
        given = opt_list(self.options.get("annotations"))
        if given:
            out = []
            for name in given:
                path = resolve_option_path(self, name)
                if not path.is_file():
                    raise RootError(f"{path}: annotation file not found (--opt annotations=)")
                data = _is_coco(path)
                if data is None:
                    raise RootError(f"{path}: not a COCO instances JSON (needs images, annotations, categories)")
                out.append((path, data))
            return out
        ann_dir = resolve_ci(self.root, "annotations")
        searches = [[ann_dir]] if ann_dir is not None and ann_dir.is_dir() else []
        searches += [[self.root], sorted_dirs(self.root)]  # root, then every folder one down together
        for folders in searches:
            found = [(p, d) for folder in folders for p in sorted(folder.iterdir())
                     if p.is_file() and p.suffix.lower() == ".json" and not p.name.startswith(".")
                     and (d := _is_coco(p)) is not None]
            if found:
                return found
        raise RootError(f"{self.root}: no COCO instances JSON found (in annotations/, the root or one folder "
                        "down); name it with --opt annotations=<file>")

    def _images_dir(self, ann: Path, split_token: str, data: dict) -> Path:
        if self.options.get("images"):
            folder = resolve_option_path(self, self.options["images"])
            if not folder.is_dir():
                raise RootError(f"{folder}: images folder not found (--opt images=)")
            return folder
        candidates = []
        if split_token:
            candidates += [self.root / split_token, self.root / "images" / split_token]
        candidates += [self.root / "images", ann.parent, ann.parent.parent, self.root]
        candidates = [c for c in dict.fromkeys(candidates) if c.is_dir()]
        sample = [str(im.get("file_name", "")) for im in data["images"][:20]]
        best, hits = self.root, -1
        for folder in candidates:
            n = sum(1 for name in sample if self._locate(folder, name) is not None)
            if n > hits:
                best, hits = folder, n
        return best

    @staticmethod
    def _locate(folder: Path, file_name: str) -> Path | None:
        name = file_name.replace("\\", "/").lstrip("/")
        if not name:
            return None
        for rel in dict.fromkeys([name, name.rsplit("/", 1)[-1]]):
            found = resolve_ci(folder, rel)
            if found is not None and found.is_file():
                return found
        return None

    def locate(self) -> Path:
        """The common folder of the root and every JSON's images folder (JSONs read here, once)."""
        self.plans = []
        for ann, data in self.annotation_files():
            token, ours = _split_of_json(ann)
            self.plans.append((ann, data, token, ours, self._images_dir(ann, token, data)))
        return Path(os.path.commonpath([str(self.root.resolve()), *(str(p[4].resolve()) for p in self.plans)]))

    def samples(self) -> Iterator[RawSample | Quarantined]:
        plans = self.plans
        normals = normal_names(self.options)
        crowd_mode = str(self.options.get("crowd") or "include").lower()
        if crowd_mode not in ("include", "ignore"):
            raise RootError(f"--opt crowd={crowd_mode}: expected include or ignore")
        product = product_of(self)
        for ann, data, token, ours, images_dir in plans:
            yield from self._json_samples(ann, data, token, ours, images_dir.resolve(), normals,
                                          crowd_mode == "ignore", product)

    def _json_samples(self, ann: Path, data: dict, token: str, ours: str | None, images_dir: Path,
                      normals: set[str], ignore_crowd: bool, product: str) -> Iterator[RawSample | Quarantined]:
        ann_rel = os.path.relpath(ann.resolve(), self.base).replace(os.sep, "/")
        categories = {c.get("id"): str(c.get("name", c.get("id"))) for c in data["categories"] if isinstance(c, dict)}
        images = {im.get("id"): im for im in data["images"] if isinstance(im, dict)}
        per_image: dict[object, list[dict]] = {}
        for a in data["annotations"]:
            if not isinstance(a, dict):
                continue
            if a.get("image_id") not in images:
                yield Quarantined(source=self.source_id, path=ann_rel,
                                  reason=f"annotation {a.get('id')} refers to image_id {a.get('image_id')!r}, "
                                         f"which is not in {ann.name}")
                continue
            per_image.setdefault(a["image_id"], []).append(a)

        for image_id, im in sorted(images.items(), key=lambda kv: str(kv[1].get("file_name", ""))):
            file_name = str(im.get("file_name") or "")
            path = self._locate(images_dir, file_name)
            if path is None:
                shown = os.path.relpath(images_dir / file_name, self.base).replace(os.sep, "/")
                yield Quarantined(source=self.source_id, path=shown,
                                  reason=f"listed in {ann.name} (image id {image_id}) but not found")
                continue
            rel = path.resolve().relative_to(self.base).as_posix()
            try:
                sample = self._sample(rel, im, per_image.get(image_id, []), categories, normals, ignore_crowd,
                                      product, ann.name)
            except ValueError as exc:
                yield Quarantined(source=self.source_id, path=rel, reason=str(exc))
                continue
            sample.source_split = token
            if ours:
                sample.split = ours
            else:
                sample.split, sample.split_origin = self.seeded(seeded_group(self, rel)), "seeded"
            yield sample

    def _sample(self, rel: str, im: dict, anns: list[dict], categories: dict, normals: set[str],
                ignore_crowd: bool, product: str, ann_name: str) -> RawSample:
        labels, normal_labels, boxes, polygons, rles = [], [], [], [], []
        polygon_labels, rle_labels = [], []
        crowd, unsegmented = 0, 0
        for a in sorted(anns, key=lambda a: (str(a.get("id")),)):
            if a.get("category_id") not in categories:
                raise ValueError(f"{ann_name}: annotation {a.get('id')} has unknown "
                                 f"category_id {a.get('category_id')!r}")
            name = categories[a["category_id"]]
            if is_normal(name, normals):
                normal_labels.append(name)
                continue
            if a.get("iscrowd"):
                if ignore_crowd:
                    continue
                crowd += 1
            labels.append(name)
            seg = a.get("segmentation")
            polys = []
            if isinstance(seg, list) and seg:
                polys = [list(map(float, p)) for p in (seg if isinstance(seg[0], list) else [seg]) if len(p) >= 6]
                polygons.extend(polys)
                polygon_labels.extend(name for _ in polys)
                unsegmented += 0 if polys else 1
            elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
                rles.append({"size": [int(v) for v in seg["size"]], "counts": seg["counts"]})
                rle_labels.append(name)
            else:
                unsegmented += 1
            bbox = a.get("bbox")
            if isinstance(bbox, list) and len(bbox) == 4:
                x, y, w, h = (float(v) for v in bbox)
                if w > 0 and h > 0:
                    boxes.append((name, x, y, x + w, y + h))
                    continue
            if polys:  # no usable bbox: the extent of the polygons
                xs = [v for p in polys for v in p[0::2]]
                ys = [v for p in polys for v in p[1::2]]
                if max(xs) > min(xs) and max(ys) > min(ys):
                    boxes.append((name, min(xs), min(ys), max(xs), max(ys)))
        defective = bool(labels)
        mask = CocoMask(polygons, rles, polygon_labels, rle_labels) \
            if defective and (polygons or rles) and not unsegmented else None
        return RawSample(rel_path=rel, product=product, source_split="",
                         label="defective" if defective else "normal",
                         source_labels=list(dict.fromkeys(labels if defective else normal_labels)),
                         mask=mask, boxes=boxes,
                         attributes={"coco_image_id": im.get("id"), **({"crowd_regions": crowd} if crowd else {})})


__all__ = ["CocoAdapter", "CocoMask", "decode_rle_string", "encode_rle_string", "rle_to_mask"]
