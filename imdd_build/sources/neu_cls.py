"""NEU surface defect database, classification part (NEU-CLS; Song and Yan, Appl. Surf. Sci. 2013).

1,800 gray 200x200 BMP images of hot-rolled steel strip, 300 per class, all defective. The archive
holds one folder (its name varies: `NEU surface defect database`, `NEU-CLS`, ...) of files named
`<code>_<n>.bmp` with the class code `Cr` (crazing), `In` (inclusion), `Pa` (patches),
`PS` (pitted surface), `RS` (rolled-in scale), `Sc` (scratches) and n = 1..300.

Quirks handled:
* the images are found anywhere below the root (the wrapping folder name is not fixed; a copy
  sorted into class sub-folders works too); hidden files, `__MACOSX` and non-images are skipped;
* the code is matched case-insensitively and may be followed by `_`, `-`, a blank or the number
  directly (`PS_12`, `ps12`); file names that spell the full class (`rolled-in_scale_12`) are
  recognised with the NEU-DET class matcher (longest class first, never split on `_`);
* an image whose name has no class code is quarantined; a second file with the same class and
  number (a stray nested copy) is quarantined as a duplicate of the first one (shallowest first);
* no official split: a seeded split per image, grouped by `<code>_<n>`.

`source_labels` is the code as the source spells it (`Cr`, `PS`) or the full class name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..record import Quarantined
from ..sourcekit.base import RawSample, SourceAdapter
from .neu_det import NEU_CLASSES, PRODUCT, neu_class_of, walk_images, wanted_classes
from ..sourcekit.options import CategoryOptions

CODES = {"Cr": "crazing", "In": "inclusion", "Pa": "patches", "PS": "pitted_surface",
         "RS": "rolled-in_scale", "Sc": "scratches"}
_CODE_RE = re.compile(r"^(cr|in|pa|ps|rs|sc)[-_\s]*(\d+)$", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(\d+)$")
_BY_LOWER = {code.lower(): code for code in CODES}


def parse_cls_name(stem: str) -> tuple[str, str, str] | None:
    """`PS_12` -> ("PS", "pitted_surface", "12"); `crazing_3` -> ("crazing", "crazing", "3")."""
    m = _CODE_RE.match(stem.strip())
    if m:
        code = _BY_LOWER[m.group(1).lower()]
        return code, CODES[code], str(int(m.group(2)))
    cls = neu_class_of(stem)
    if cls is not None:
        num = _NUMBER_RE.search(stem)
        return cls, cls, str(int(num.group(1))) if num else stem.lower()
    return None


class NeuClsAdapter(SourceAdapter):
    id = "neu_cls"
    expected = "<code>_<n>.bmp images (codes Cr, In, Pa, PS, RS, Sc)"
    Options = CategoryOptions
    labels = (*CODES, *NEU_CLASSES)

    def samples(self) -> Iterator[RawSample | Quarantined]:
        wanted = wanted_classes(self.options)
        images = sorted(walk_images(self.root), key=lambda p: (len(p.relative_to(self.root).parts), p.as_posix()))
        seen: dict[str, str] = {}
        for image in images:
            rel = image.relative_to(self.root).as_posix()
            parsed = parse_cls_name(image.stem)
            if parsed is None:
                yield Quarantined(source=self.source_id, path=rel,
                                  reason="file name starts with no NEU class code (Cr, In, Pa, PS, RS, Sc)")
                continue
            spelling, cls, number = parsed
            if wanted is not None and cls not in wanted:
                continue
            group = f"{cls}_{number}"
            if group in seen:
                yield Quarantined(source=self.source_id, path=rel, reason=f"duplicate of {seen[group]}")
                continue
            seen[group] = rel
            yield RawSample(rel_path=rel, product=PRODUCT, source_split="", label="defective",
                            source_labels=[spelling], split=self.seeded(group), split_origin="seeded",
                            attributes={"number": int(number)} if number.isdigit() else {})
