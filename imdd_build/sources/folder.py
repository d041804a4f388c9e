"""Generic `folder` adapter: a user's own images sorted into one folder per class.

Layouts (detected from the root):
* `<root>/<class>/**/<image>`: no split level; every image gets a seeded split (`split_origin`
  "seeded", `source_split` ""), grouped by its path without extension (see `group` below);
* `<root>/<split>/<class>/**/<image>`: detected when a top-level folder is a split name
  (train/training, val/valid/validation, test/testing, also with trailing digits such as
  `train2017`; any case). Other top-level folders next to split folders are reported (quarantined,
  one line per folder) and skipped.
Class folders may contain sub-folders (lots, days); they are walked recursively and the image keeps
the class of its top class folder. Hidden files, `__MACOSX` and non-image files are skipped; images
lying outside any class folder are quarantined.

Labels: the class folder name is the source label (resolved to a canonical type by the taxonomy's
global synonyms, then `--label-map`, else kept as its slug). Folders whose name (compared
case/separator-insensitively) is a normal name hold defect-free images.

Masks (optional):
* a masks folder, `--opt masks=<dir>` relative to the root (or absolute), or auto-detected when the
  root has a top-level `masks`, `mask`, `ground_truth`, `groundtruth` or `gt` folder (this folder is
  then never taken for a class). A mask belongs to an image when it has the same relative path
  (with or without the split level, or the class level) and the same stem, optionally followed by
  `_mask`, `_gt`, `-mask` or `-gt`, with any image extension and any case; as a last resort a stem
  that is unique in the masks folder matches. `--opt masks=none` disables the auto-detection;
* masks next to their images: inside a class folder, `<stem>_mask.<ext>` / `<stem>_gt.<ext>` beside
  an image `<stem>.<ext>` is that image's mask, not an image of its own.
Masks of normal images are ignored; a defective image without mask is a class-only sample. Masks
saved as JPEG are thresholded at 127, others at 0 (`--opt mask_threshold=N` overrides).

Options (`--opt key=value`):
* `normal=good,ok,...`   the normal class names (default: good, ok, normal, none, pass, passed,
                          no_defect, nodefect, defect_free, non_defective, free, clean, negative)
* `masks=<dir>|none`     the masks folder (see above)
* `mask_threshold=N`     gray value above which a mask pixel is a defect
* `split_level=auto|true|false`  force or forbid the split level (default auto)
* `product=<name>`       the product name records get (default: the --domain, else unknown)
* `group=<regex>`        seeded splits: what must not straddle splits, a regular expression searched
                          in the image's relative path (its first group if it has one, else the
                          match); images where it does not match fall back to their own path.

This module also holds the small helpers the other generic adapters share (option lists, normal
names, seeded groups, split names, mask thresholds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..record import Quarantined
from ..taxonomy import norm_label
from ..sourcekit.base import SPLIT_MAP, RawSample, RootError, SourceAdapter, is_image, sorted_dirs
from ..sourcekit.masks import MaskFiles
from ..sourcekit.options import Field, GenericOptions, MaskThresholdOptions, Optional, auto_none, field_validator

DEFAULT_NORMAL = ("good", "ok", "normal", "none", "pass", "passed", "no_defect", "nodefect", "defect_free",
                  "non_defective", "free", "clean", "negative")
MASK_DIR_NAMES = ("masks", "mask", "ground_truth", "groundtruth", "gt")
MASK_SUFFIXES = ("_mask", "_gt", "-mask", "-gt")
_JPEG = {".jpg", ".jpeg"}


# -- helpers shared by the generic adapters --------------------------------------------------------
def opt_list(value) -> list[str]:
    """An option given as `a,b`, a YAML list `[a, b]` or a single scalar, as a list of strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set)):
        items = [str(v) for v in value]
    else:
        items = str(value).split(",")
    return [i.strip() for i in items if i.strip()]


def opt_bool(value, default: bool | None = None) -> bool | None:
    """`true/false/yes/no/1/0` (YAML already makes most of them booleans); `auto` or unset -> default."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise RootError(f"option value {value!r}: expected true, false or auto")


def normal_names(options: dict, default: Iterable[str] = DEFAULT_NORMAL) -> set[str]:
    """Normal class names, normalized (`No-Defect` -> `no_defect`); `--opt normal=...` replaces the default."""
    given = options.get("normal")
    names = opt_list(given) if given is not None else list(default)
    return {norm_label(n) for n in names}


def is_normal(name: str, names: set[str]) -> bool:
    return norm_label(name) in names


def split_name(name: str) -> str | None:
    """Our split for a folder/file-name token: `train`, `Val`, `valid`, `train2017` -> train/validation."""
    low = name.strip().lower()
    if low in SPLIT_MAP:
        return SPLIT_MAP[low]
    low = low.rstrip("0123456789").rstrip("_-")
    return SPLIT_MAP.get(low)


def product_of(adapter: SourceAdapter, fallback: str | None = None) -> str:
    """The product records get: `--opt product=`, else a name the data gives (`fallback`), else the
    source's domain (`--domain`), else `unknown`. Never the root folder's name: `line7/` or
    `export_2024/` says where the files are, not what they show (captions would call it a product)."""
    domain = getattr(adapter.entry, "domain", None)
    return str(adapter.options.get("product") or fallback or (domain if domain and domain != "unknown" else "unknown"))


def seeded_group(adapter: SourceAdapter, rel_path: str) -> str:
    """The seeded-split group of an image: `--opt group=<regex>` on its path, else its path without extension."""
    pattern = adapter.options.get("group")
    if pattern:
        try:
            match = re.search(str(pattern), rel_path)
        except re.error as exc:
            raise RootError(f"--opt group={pattern!r}: not a regular expression: {exc}") from None
        if match:
            return match.group(1) if match.groups() and match.group(1) is not None else match.group(0)
    stem, dot, ext = rel_path.rpartition(".")
    return stem if dot and "/" not in ext else rel_path


def mask_files(adapter: SourceAdapter, rel_masks: list[str]) -> MaskFiles:
    """Mask files with the right threshold: 127 when any is a JPEG, else 0 (`--opt mask_threshold`)."""
    threshold = adapter.options.get("mask_threshold")
    if threshold is None or threshold == "":
        threshold = 127 if any(Path(m).suffix.lower() in _JPEG for m in rel_masks) else 0
    try:
        return MaskFiles(list(rel_masks), threshold=int(threshold))
    except (TypeError, ValueError):
        raise RootError(f"--opt mask_threshold={threshold!r}: expected an integer") from None


def resolve_option_path(adapter: SourceAdapter, value, relative_to: Path | None = None) -> Path:
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else (relative_to or adapter.root) / path


def walk_images(folder: Path) -> list[Path]:
    """Every image under `folder`, recursively, sorted; hidden entries and `__MACOSX` skipped."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in rel):
            continue
        if path.is_file() and is_image(path):
            out.append(path)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def strip_mask_suffix(stem: str) -> tuple[str, bool]:
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(low) > len(suffix):
            return low[: -len(suffix)], True
    return low, False


class MaskIndex:
    """Mask files of a masks folder, looked up by (relative folder, stem) or by a unique stem."""

    def __init__(self, folder: Path):
        self.by_path: dict[tuple[str, str], Path] = {}
        by_stem: dict[str, list[Path]] = {}
        for mask in walk_images(folder):
            rel_dir = mask.parent.relative_to(folder).as_posix().lower()
            rel_dir = "" if rel_dir == "." else rel_dir
            stem, suffixed = strip_mask_suffix(mask.stem)
            # an exact-stem mask wins over a suffixed one for the same key
            if suffixed:
                self.by_path.setdefault((rel_dir, stem), mask)
            else:
                self.by_path[(rel_dir, stem)] = mask
            by_stem.setdefault(stem, []).append(mask)
        self.by_stem = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}

    def find(self, rel_dirs: list[str], stem: str) -> Path | None:
        stem = stem.lower()
        for rel_dir in rel_dirs:
            found = self.by_path.get((rel_dir.lower(), stem))
            if found is not None:
                return found
        return self.by_stem.get(stem)


# -- the adapter -----------------------------------------------------------------------------------
class FolderAdapter(SourceAdapter):
    id = "folder"
    expected = "images in one folder per class (<class>/ or <split>/<class>/)"

    class Options(GenericOptions, MaskThresholdOptions):
        masks: Optional[str] = Field(None, description="The masks folder, or none (default: auto-detected).")
        split_level: Optional[bool] = Field(None, description="Force (true) or forbid (false) the split folder "
                                                              "level (default: auto).")

        @field_validator("split_level", mode="before")
        @classmethod
        def _auto(cls, value):
            return auto_none(value)

    generic = True
    annotation_kinds = ("class", "mask")

    def _masks_dir(self) -> Path | None:
        value = self.options.get("masks")
        if value is not None and str(value).strip().lower() in ("none", "off", "false", ""):
            return None
        if value is not None and value is not False:
            folder = resolve_option_path(self, value)
            if not folder.is_dir():
                raise RootError(f"{folder}: masks folder not found (--opt masks={value})")
            return folder
        for d in sorted_dirs(self.root):
            if d.name.lower() in MASK_DIR_NAMES:
                return d
        return None

    def samples(self) -> Iterator[RawSample | Quarantined]:
        normals = normal_names(self.options)
        masks_dir = self._masks_dir()
        masks = MaskIndex(masks_dir) if masks_dir is not None else None
        skip = masks_dir.resolve() if masks_dir is not None else None
        top = [d for d in sorted_dirs(self.root) if d.resolve() != skip]
        forced = opt_bool(self.options.get("split_level"))
        split_level = forced if forced is not None else any(split_name(d.name) for d in top)
        product = product_of(self)

        for stray in (p for p in sorted(self.root.iterdir()) if p.is_file() and is_image(p)):
            yield Quarantined(source=self.source_id, path=stray.name,
                              reason="image outside any class folder; skipped")
        if split_level:
            splits = []
            for d in top:
                if split_name(d.name):
                    splits.append(d)
                else:
                    yield Quarantined(source=self.source_id, path=d.name + "/",
                                      reason="folder is not a split (train/val/test) next to split folders; skipped")
            layout = [(s, c) for s in splits for c in sorted_dirs(s) if c.resolve() != skip]
            for s in splits:
                for stray in (p for p in sorted(s.iterdir()) if p.is_file() and is_image(p)):
                    yield Quarantined(source=self.source_id, path=stray.relative_to(self.root).as_posix(),
                                      reason="image outside any class folder; skipped")
        else:
            layout = [(None, c) for c in top]
        if not layout:
            raise RootError(f"{self.root}: no class folders (expected <root>/<class>/* or <root>/<split>/<class>/*)")

        for split_dir, class_dir in layout:
            normal = is_normal(class_dir.name, normals)
            images = walk_images(class_dir)
            sibling_masks = self._sibling_masks(images)
            used_as_masks = set(sibling_masks.values())
            for image in images:
                if image in used_as_masks:
                    continue
                rel = image.relative_to(self.root).as_posix()
                mask_path = None
                if not normal:
                    mask_path = sibling_masks.get(image)
                    if mask_path is None and masks is not None:
                        mask_path = masks.find(self._mask_dirs(image, split_dir, class_dir), image.stem)
                sample = RawSample(
                    rel_path=rel, product=product, source_split=split_dir.name if split_dir else "",
                    label="normal" if normal else "defective", source_labels=[class_dir.name],
                    mask=mask_files(self, [self._rel(mask_path)]) if mask_path is not None else None,
                )
                if split_dir is not None:
                    sample.split = split_name(split_dir.name)
                else:
                    sample.split, sample.split_origin = self.seeded(seeded_group(self, rel)), "seeded"
                yield sample

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:  # a masks folder outside the root: keep the path as given
            return path.as_posix()

    def _mask_dirs(self, image: Path, split_dir: Path | None, class_dir: Path) -> list[str]:
        """Candidate folders (relative to the masks folder) of an image's mask, most specific first."""
        rel_dir = image.parent.relative_to(self.root).as_posix()
        in_class = image.parent.relative_to(class_dir).as_posix()
        in_class = "" if in_class == "." else in_class
        candidates = [rel_dir]
        if split_dir is not None:
            candidates.append(image.parent.relative_to(split_dir).as_posix())
        candidates += [in_class, ""]
        return list(dict.fromkeys(candidates))

    @staticmethod
    def _sibling_masks(images: list[Path]) -> dict[Path, Path]:
        """image -> its mask when `<stem>_mask.<ext>` (or `_gt`) lies next to `<stem>.<ext>`."""
        by_key = {(p.parent, p.stem.lower()): p for p in images}
        out = {}
        for p in images:
            stem, suffixed = strip_mask_suffix(p.stem)
            if suffixed and (p.parent, stem) in by_key:
                out.setdefault(by_key[(p.parent, stem)], p)
        return out


__all__ = ["FolderAdapter", "MaskIndex", "mask_files", "normal_names", "opt_list", "seeded_group", "split_name"]
