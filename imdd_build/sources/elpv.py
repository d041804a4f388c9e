"""ELPV: electroluminescence images of solar cells (Buerhop-Lutz et al. 2018; Deitsch et al. 2019).
CC BY-NC-SA 4.0.

Native layout (the `zae-bayern/elpv-dataset` repository; newer versions keep the data under
`src/elpv_dataset/data/`):

    root/labels.csv
    root/images/cell0001.png ... cell2624.png   300x300 gray, from 44 modules

`labels.csv` is looked for at the root and up to four folders below it; image paths in it are
relative to its folder (which becomes the base of all record paths). It has no header; each line
holds three whitespace-separated fields (spaces or tabs, any number): image path, defect
probability (0, 1/3, 2/3 or 1, the share of experts who judged the cell defective) and module
type (`mono` or `poly`).

Labels: probability > 0 -> `defective` (source label `defective`, canonical `solar_cell_defect`),
0 -> `normal` (source label `functional`). The probability is kept as attribute
`defect_probability`, the level it encodes (0..3 = round(3 * probability)) as `defect_level`,
and the module type as `module_type`; the module type is also the product (`--category mono`).
No localisation (no mask, no boxes). A malformed line, a probability outside [0, 1] or a listed
image that is missing are quarantined; images not listed in labels.csv are quarantined as unlabelled.

No official split: seeded split, one group per cell image. The cell-to-module assignment is not
published with the labels, so cells of one module may fall into different splits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs, sorted_images
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import search_below


def _find_labels(root: Path, depth: int = 4) -> Path | None:
    found = search_below(root, lambda folder: next(
        (p for p in sorted(folder.iterdir()) if p.is_file() and p.name.lower() == "labels.csv"), None), depth)
    return found[1] if found else None


class ELPVAdapter(SourceAdapter):
    id = "elpv"
    expected = "labels.csv with images/cellNNNN.png"
    Options = CategoryOptions

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.labels_csv = _find_labels(self.root)
        if self.labels_csv is None:
            raise RootError(f"{self.root}: no labels.csv found (is this the elpv-dataset folder?)")
        return self.labels_csv.parent

    def samples(self) -> Iterator[RawSample | Quarantined]:
        labels_csv = self.labels_csv
        wanted = {c.lower() for c in self.options.get("categories") or []}
        listed: set[str] = set()
        for line_no, line in enumerate(labels_csv.read_text(encoding="utf-8-sig").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{labels_csv.name} line {line_no}"
            try:
                if len(fields) != 3:
                    raise ValueError(f"expected 3 fields (path, probability, type), found {len(fields)}")
                path, prob_text, module = fields
                probability = float(prob_text)
                if not 0.0 <= probability <= 1.0:
                    raise ValueError(f"probability {prob_text} outside [0, 1]")
            except ValueError as exc:
                listed.add(fields[0].replace("\\", "/"))  # reported here, not again as unlisted
                yield Quarantined(source=self.source_id, path=f"{labels_csv.name}:{line_no}", reason=f"{where}: {exc}")
                continue
            image = resolve_ci(self.base, path.replace("\\", "/"))
            if image is None or not image.is_file():
                yield Quarantined(source=self.source_id, path=path, reason=f"listed in {where} but not found")
                continue
            rel = image.relative_to(self.base).as_posix()
            listed.add(rel)
            module = module.lower()
            if wanted and module not in wanted:
                continue
            defective = probability > 0
            yield RawSample(
                rel_path=rel, product=module, source_split="", label="defective" if defective else "normal",
                source_labels=["defective" if defective else "functional"],
                split=self.seeded(Path(rel).stem), split_origin="seeded",
                attributes={"defect_probability": probability, "defect_level": round(probability * 3),
                            "module_type": module},
            )
        images_dir = next((d for d in sorted_dirs(self.base) if d.name.lower() == "images"), None)
        for image in sorted_images(images_dir) if images_dir else []:
            rel = image.relative_to(self.base).as_posix()
            if rel not in listed:
                yield Quarantined(source=self.source_id, path=rel, reason=f"not listed in {labels_csv.name} (no label)")
