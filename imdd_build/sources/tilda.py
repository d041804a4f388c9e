"""TILDA Textile Texture Database (Univ. Freiburg, DFG project; original site offline).

Eight textile textures `c1r1, c1r3, c2r2, c2r3, c3r1, c3r3, c4r1, c4r3`, each with seven error
classes `e0` (no defect) .. `e6`, 50 gray 768x512 TIFF images per pair: `c1r1/e0/*.tif`.
Classification only. The meaning of e1..e6 (all unverified): e1 hole, e2 stain/spot, e3 thread
defect, e4 foreign body, e5 crease/wrinkle, e6 shading (illumination/colour change).

Quirks handled:
* texture folders (`c<d>r<d>`, any case) are found in the root or one or two levels below it
  (a wrapping `tilda/` folder or a stray nested copy: the shallowest level with texture folders
  wins); paths are relative to the folder that holds them, so keys do not depend on the wrapping;
* images lying directly in a texture folder with the error class in their name (`c1r1e3n12.tif`)
  are accepted too;
* `.tif`/`.TIF`/`.tiff` and other image extensions are matched case-insensitively; hidden files and
  `__MACOSX` are skipped; images in a folder that is no error class (`e7`, `misc`) or whose name
  carries no error class are quarantined;
* e0 is normal (source label `e0`), e1..e6 defective (source label the code);
* `--category` selects textures (`c1r1`); no official split: seeded per image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.options import CategoryOptions
from ..sourcekit.search import search_below

TEXTURE_RE = re.compile(r"^c\d+r\d+$", re.IGNORECASE)
ERROR_RE = re.compile(r"^e(\d)$", re.IGNORECASE)
NAME_ERROR_RE = re.compile(r"^c\d+r\d+[-_]?e(\d)(?!\d)", re.IGNORECASE)
ERROR_CLASSES = ("e0", "e1", "e2", "e3", "e4", "e5", "e6")


def find_textures(root: Path) -> tuple[Path, list[Path]]:
    found = search_below(root, lambda folder: [d for d in sorted_dirs(folder) if TEXTURE_RE.match(d.name)], 2)
    if found:
        return found
    raise RootError(f"{root}: no TILDA texture folders (c1r1, c1r3, ...) found")


class TildaAdapter(SourceAdapter):
    id = "tilda"
    expected = "texture folders c1r1 ... c4r3 holding e0 ... e6/*.tif"
    Options = CategoryOptions
    labels = ERROR_CLASSES

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        base, self.textures = find_textures(self.root)
        return base

    def samples(self) -> Iterator[RawSample | Quarantined]:
        textures = self.textures
        wanted = {c.lower() for c in self.options.get("categories") or []}
        if wanted:
            missing = wanted - {t.name.lower() for t in textures}
            if missing:
                raise RootError(f"{self.root}: textures not found: {', '.join(sorted(missing))}")
        for texture in textures:
            product = texture.name.lower()
            if wanted and product not in wanted:
                continue
            for image in sorted_images(texture):  # flat variant: error class in the file name
                m = NAME_ERROR_RE.match(image.stem)
                yield self._sample(image, product, m.group(1) if m else None, "file name")
            for err_dir in sorted_dirs(texture):
                m = ERROR_RE.match(err_dir.name)
                for image in sorted_images(err_dir):
                    yield self._sample(image, product, m.group(1) if m else None, f"folder {err_dir.name!r}")

    def _sample(self, image: Path, product: str, error: str | None, where: str) -> RawSample | Quarantined:
        rel = image.relative_to(self.base).as_posix()
        code = f"e{error}" if error is not None else None
        if code not in ERROR_CLASSES:
            return Quarantined(source=self.source_id, path=rel, reason=f"{where} names no TILDA error class e0..e6")
        return RawSample(rel_path=rel, product=product, source_split="",
                         label="normal" if code == "e0" else "defective", source_labels=[code],
                         split=self.seeded(rel.rsplit(".", 1)[0].lower()), split_origin="seeded")
