"""ICCAD 2012 lithography hotspot benchmark (Torres, ICCAD 2012), in its image form.

The contest ships GDSII/OASIS layouts; this adapter reads the widely used image form (the DLHSD
"iccad-official" tarball): one folder per benchmark, `iccad1` ... `iccad5`, each with `train/` and
`test/` holding PNG layout clips. A clip's class comes from its class sub-folder
(`train/HS/x.png`, `test/non-hotspot/x.png`) or, for clips lying directly in the split folder, from
a token in its file name (`HS12.png`, `nhs_0003.png`, `iccad1_hotspot_7.png`). Accepted spellings,
any case and separator: hotspot = `HS`, `hotspot(s)`; non-hotspot = `NHS`, `non-hotspot(s)`,
`nonhotspot(s)`; the non-hotspot forms are tested first (`NHS` contains `HS`), and a class folder
wins over the file name. The spelling found is kept as the source label; hotspot clips are
defective (`lithography_hotspot`, no mask: the class is per clip), non-hotspot clips are normal.

Tolerated variants: benchmark folders spelled `iccad1`, `ICCAD-1`, `iccad_1`, `iccad12-1`,
`iccad2012_1`, found at the root or up to two folders down (the tarball's wrapper folder; the
shallowest level wins and samples are relative to it); split folders `train`/`test` in any case
(also `training`/`testing`); feature CSVs (`label.csv`, `dc.csv`, `ac*.csv`), hidden files and
`__MACOSX` are ignored; benchmarks under several wrapper folders are read relative to their
common parent; any image extension, matched case-insensitively. A second copy of a
benchmark (e.g. both `iccad1` and `ICCAD-1`) is quarantined as a whole folder; clips whose class
cannot be told, and images outside a split folder, are quarantined one by one. Product = the
benchmark (`iccad1` ... `iccad5`); `--category iccad3` (or `3`) filters on it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import (
    SPLIT_MAP,
    RawSample,
    RootError,
    SourceAdapter,
    sorted_dirs,
    sorted_images,
)
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import shallowest

_BENCH = re.compile(r"^iccad(?:[-_ ]?(?:12|2012))?[-_ ]?([1-5])$", re.IGNORECASE)
_NON_HOTSPOT = re.compile(r"(?<![a-z])(nhs|non[-_ ]?hotspots?)(?![a-z])", re.IGNORECASE)
_HOTSPOT = re.compile(r"(?<![a-z])(hs|hotspots?)(?![a-z])", re.IGNORECASE)


def classify(name: str) -> tuple[str, bool] | None:
    """(spelling found, is hotspot) for a folder or file name, None when it names no class."""
    found = _NON_HOTSPOT.search(name)
    if found:
        return found.group(1), False
    found = _HOTSPOT.search(name)
    if found:
        return found.group(1), True
    return None


def benchmark_id(name: str) -> str | None:
    found = _BENCH.match(name.strip())
    return f"iccad{found.group(1)}" if found else None


class ICCAD12Adapter(SourceAdapter):
    id = "iccad12"
    expected = ("PNG layout clips in iccad1 ... iccad5/{train,test}/, class from an HS/NHS sub-folder or file "
                "name (the DLHSD image tarball; the repository's feature CSVs and .OAS layouts hold no clips)")
    Options = CategoryOptions

    def _benchmarks(self) -> tuple[Path, list[tuple[str, Path]]]:
        """(base folder, [(benchmark id, folder)]) at the shallowest level that has any."""
        found = shallowest(self.root, lambda d: d != self.root and benchmark_id(d.name), depth=3)
        benches = [(b, d) for d, b in found]
        if benches:  # one wrapper folder: samples relative to it; several: to their common parent
            return Path(os.path.commonpath([d.parent for _, d in benches])), benches
        raise RootError(f"{self.root}: no benchmark folders iccad1 ... iccad5 (with train/ and test/) found")

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        base, self.benches = self._benchmarks()
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        benches = self.benches
        wanted = {benchmark_id(c) or benchmark_id(f"iccad{c}") or c for c in self.options.get("categories") or []}
        used: dict[str, Path] = {}
        for bench, folder in sorted(benches, key=lambda bd: (bd[0], bd[1].name != bd[0], bd[1].name)):
            if wanted and bench not in wanted:
                continue
            rel = folder.relative_to(self.base).as_posix()
            if bench in used:
                yield Quarantined(source=self.source_id, path=rel,
                                  reason=f"second copy of benchmark {bench} (using {used[bench].name}/)")
                continue
            used[bench] = folder
            for image in sorted_images(folder):
                yield Quarantined(source=self.source_id, path=image.relative_to(self.base).as_posix(),
                                  reason="image outside a train/ or test/ folder")
            for split_dir in sorted_dirs(folder):
                if split_dir.name.lower() not in SPLIT_MAP:
                    continue
                yield from self._split(bench, split_dir)

    def _split(self, bench: str, split_dir: Path) -> Iterator[RawSample | Quarantined]:
        loose = [(image, None) for image in sorted_images(split_dir)]
        nested = []
        for class_dir in sorted_dirs(split_dir):
            cls = classify(class_dir.name)
            for image in sorted_images(class_dir):
                nested.append((image, cls))
        for image, cls in loose + nested:
            rel = image.relative_to(self.base).as_posix()
            cls = cls or classify(image.stem)
            if cls is None:
                yield Quarantined(source=self.source_id, path=rel,
                                  reason="class not given by folder or file name (expected HS/NHS or "
                                         "hotspot/non-hotspot)")
                continue
            spelling, hotspot = cls
            yield RawSample(rel_path=rel, product=bench, source_split=split_dir.name,
                            label="defective" if hotspot else "normal", source_labels=[spelling])
