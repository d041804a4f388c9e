"""Real-IAD (Wang et al., CVPR 2024): 30 objects, 5 camera views per physical sample. License: sources.yaml.

Native layout (each archive unpacked into one `Real-IAD/` root):

    realiad_jsons/realiad_jsons/<category>.json       multi-view split (default)
    realiad_jsons/realiad_jsons_sv/<category>.json    single-view split   (--opt json=realiad_jsons_sv)
    realiad_jsons/realiad_jsons_fuiad_0.1/...          fully-unsupervised variants, same format
    realiad_256/ realiad_512/ realiad_1024/ realiad_raw/   the same images at several resolutions
      <category>/OK/S0001/<category>_0001_OK_C1_<timestamp>.jpg
      <category>/NG/HS/S0055/<category>_0055_NG_HS_C1_<timestamp>.jpg  (+ ..._mask.png beside it)

Each JSON has `meta` and the official `train` / `test` lists of dicts with `category`,
`anomaly_class` ("OK" = normal, else a defect code: AK pit, BX deformation, CH abrasion,
HS scratch, PS damage, QS missing parts, YW foreign object, ZW contamination), `image_path` and
`mask_path` (relative to the category folder of the chosen resolution; null for OK).

Quirks handled:
* resolution: `--opt resolution=256|512|1024|raw`; default the largest present (raw > 1024 > 512
  > 256). Paths (and keys) are relative to the resolution folder, so the same photo keeps its key
  whichever resolution is ingested; the resolution is kept in `attributes.resolution`;
* the JSON folder may be nested (`realiad_jsons/realiad_jsons/`) or flat (`realiad_jsons/*.json`);
* a category folder holding a stray nested copy of itself (`audiojack/audiojack/OK/...`) is followed;
  paths are matched case-insensitively;
* a listed image or mask that is missing is quarantined; a category whose folder is missing at the
  chosen resolution is reported once;
* the camera view (`C1`..`C5`) and the physical sample id (`S0055`) are kept in attributes;
* masks are binarised at half their maximum.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.mvtec_tree import HalfMaxMask
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs
from ..sourcekit.options import CategoryOptions, Field, Literal, Optional, field_validator

RESOLUTIONS = ("raw", "1024", "512", "256")  # largest first
JSONS = "realiad_jsons"
CODES = ("AK", "BX", "CH", "HS", "PS", "QS", "YW", "ZW")
_VIEW = re.compile(r"(?:^|_)(C\d+)(?:_|$)", re.I)
_SAMPLE = re.compile(r"^S\d+$", re.I)


class RealIADAdapter(SourceAdapter):
    id = "realiad"
    expected = "realiad_jsons/<variant>/<category>.json with the images under realiad_<resolution>/<category>/"

    class Options(CategoryOptions):
        json_dir: str = Field("realiad_jsons", alias="json",
                              description="The split JSON folder (realiad_jsons, realiad_jsons_sv, ...).")
        resolution: Optional[Literal["256", "512", "1024", "raw"]] = Field(
            None, description="Which image folder (default: the largest present).")

        @field_validator("resolution", mode="before")
        @classmethod
        def _res(cls, value):
            return None if value is None else str(value).lower().removeprefix("realiad_")

    labels = CODES

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.json_dir = self._json_dir()
        self.resolution, base = self._resolution_dir()
        return base

    def _json_dir(self) -> Path:
        top = next((d for d in sorted_dirs(self.root) if d.name.lower() == JSONS), None)
        if top is None:
            raise RootError(f"{self.root}: no {JSONS}/ folder (is this the unpacked Real-IAD root?)")
        wanted = str(self.options.get("json", JSONS))
        sub = next((d for d in sorted_dirs(top) if d.name.lower() == wanted.lower()), None)
        if sub is not None:
            return sub
        if wanted == JSONS and any(p.suffix.lower() == ".json" for p in top.iterdir()):
            return top  # flat: realiad_jsons/<category>.json
        raise RootError(f"{top}: no {wanted}/ folder of category JSON files; found: "
                        f"{', '.join(d.name for d in sorted_dirs(top)) or 'nothing'}")

    def _resolution_dir(self) -> tuple[str, Path]:
        present = {}
        for d in sorted_dirs(self.root):
            name = d.name.lower()
            if name.startswith("realiad_") and name[len("realiad_"):] in RESOLUTIONS:
                present[name[len("realiad_"):]] = d
        if not present:
            raise RootError(f"{self.root}: no image folder (realiad_256/, realiad_512/, realiad_1024/ or realiad_raw/)")
        wanted = self.options.get("resolution")
        if wanted is not None:
            wanted = str(wanted).lower().removeprefix("realiad_")
            if wanted not in present:
                raise RootError(f"{self.root}: resolution {wanted!r} not found; present: "
                                f"{', '.join(r for r in RESOLUTIONS if r in present)}")
            return wanted, present[wanted]
        best = next(r for r in RESOLUTIONS if r in present)
        return best, present[best]

    def _category_dir(self, category: str) -> Path | None:
        folder = resolve_ci(self.base, category)
        if folder is None or not folder.is_dir():
            return None
        inner = resolve_ci(folder, category)
        if inner is not None and inner.is_dir() and not any(
                d.name.upper() in ("OK", "NG") for d in sorted_dirs(folder)):
            return inner
        return folder

    def samples(self) -> Iterator[RawSample | Quarantined]:
        wanted = {str(c).lower() for c in self.options.get("categories") or []}
        files = sorted(p for p in self.json_dir.iterdir()
                       if p.is_file() and p.suffix.lower() == ".json" and not p.name.startswith("."))
        if wanted:
            missing = wanted - {p.stem.lower() for p in files}
            if missing:
                raise RootError(f"{self.json_dir}: no JSON for categories: {', '.join(sorted(missing))}")
            files = [p for p in files if p.stem.lower() in wanted]
        for path in files:
            yield from self._category(path)

    def _category(self, path: Path) -> Iterator[RawSample | Quarantined]:
        json_rel = path.relative_to(self.root).as_posix()
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as exc:
            yield Quarantined(source=self.id, path=json_rel, reason=f"unreadable JSON: {exc}")
            return
        category = path.stem
        folder = self._category_dir(category)
        if folder is None:
            yield Quarantined(source=self.id, path=f"{self.base.name}/{category}",
                              reason=f"category folder missing at resolution {self.resolution} ({json_rel})")
            return
        prefix = str((data.get("meta") or {}).get("prefix") or "").strip("/")
        for split in ("train", "test"):
            for i, item in enumerate(data.get(split) or []):
                yield self._sample(item, split, folder, prefix, f"{json_rel} {split}[{i}]", category)

    def _sample(self, item: dict, split: str, folder: Path, prefix: str, where: str,
                category: str) -> RawSample | Quarantined:
        image_rel = "/".join(p for p in (prefix, str(item.get("image_path") or "").strip("/")) if p)
        listed = f"{folder.relative_to(self.base).as_posix()}/{image_rel}"
        image = resolve_ci(folder, image_rel) if image_rel else None
        if image is None or not image.is_file():
            return Quarantined(source=self.id, path=listed, reason=f"listed in {where} but not found")
        code = str(item.get("anomaly_class") or "").strip()
        normal = code.upper() == "OK"
        mask = None
        attributes = {"resolution": self.resolution}
        view = next((m.group(1).upper() for m in [_VIEW.search(image.stem)] if m), None)
        sample = next((p.upper() for p in reversed(Path(image_rel).parts[:-1]) if _SAMPLE.match(p)), None)
        attributes.update({k: v for k, v in (("view", view), ("sample", sample)) if v})
        if not normal:
            mask_rel = "/".join(p for p in (prefix, str(item.get("mask_path") or "").strip("/")) if p)
            if item.get("mask_path"):
                found = resolve_ci(folder, mask_rel)
                if found is None or not found.is_file():
                    return Quarantined(source=self.id, path=f"{folder.relative_to(self.base).as_posix()}/{mask_rel}",
                                       reason=f"mask listed in {where} but not found")
                mask = HalfMaxMask([found.relative_to(self.base).as_posix()])
            else:
                attributes["mask"] = "missing"
        return RawSample(
            rel_path=image.relative_to(self.base).as_posix(), product=category,
            source_split=split, label="normal" if normal else "defective", source_labels=[code or "NG"],
            mask=mask, attributes=attributes,
        )
