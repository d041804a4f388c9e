"""DeepPCB (Tang et al., arXiv:1902.06197, 2019). "Research purpose only".

Native layout (the GitHub repository `tangsanli5201/DeepPCB`):
`PCBData/group<G>/<G>/<id>_test.jpg` (defective, aligned), `PCBData/group<G>/<G>/<id>_temp.jpg`
(its defect-free template), `PCBData/group<G>/<G>_not/<id>.txt` (one defect per line,
`x1 y1 x2 y2 type`, (x2, y2) the bottom-right corner, taken as the exclusive edge), and the split
lists `PCBData/trainval.txt` / `PCBData/test.txt` whose lines read `group<G>/<G>/<id>.jpg
group<G>/<G>_not/<id>.txt`.

Quirks handled:
* the lists name the image WITHOUT `_test`: the real files are `<id>_test.jpg` / `<id>_temp.jpg`;
* annotation fields separated by spaces or commas (the evaluation `gt.zip` uses commas);
* type codes 1 open, 2 short, 3 mousebite, 4 spur, 5 copper, 6 pin-hole (names as in the README);
  the source label is the name, the code is kept in `attributes.type_codes`; an unknown code or a
  malformed line quarantines the image;
* the template is ingested as a normal sample (source label `template`) and follows its pair's
  split; `--opt templates=false` leaves templates out;
* `trainval` maps to our train split, `test` to test; pairs in no list get a seeded split by pair id
  (`split_origin = seeded`, `source_split = ""`);
* a listed image that does not exist, and a test image without its annotation file, are quarantined;
* the root may be the repository root (holding `PCBData/`) or `PCBData/` itself; paths are always
  relative to the folder holding `PCBData/`. `evaluation/`, `tools/` and other files are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..record import Quarantined
from ..sourcekit.base import RawSample, RootError, SourceAdapter, resolve_ci, sorted_dirs
from ..sourcekit.options import AdapterOptions, Field

TYPES = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
TEMPLATE = "template"
LISTS = (("trainval.txt", "train"), ("test.txt", "test"))
_SEP = re.compile(r"[,\s]+")


class AnnotationError(ValueError):
    pass


def parse_boxes(path: Path) -> list[tuple[str, float, float, float, float, int]]:
    """Every non-empty line `x1 y1 x2 y2 type` (space or comma separated) -> (name, x0, y0, x1, y1, code)."""
    boxes = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = [f for f in _SEP.split(line.strip()) if f]
        if not fields:
            continue
        if len(fields) != 5:
            raise AnnotationError(f"line {n}: expected 'x1 y1 x2 y2 type', got {line.strip()!r}")
        try:
            x1, y1, x2, y2 = (float(f) for f in fields[:4])
            code = int(float(fields[4]))
        except ValueError:
            raise AnnotationError(f"line {n}: not numbers: {line.strip()!r}") from None
        if code not in TYPES:
            raise AnnotationError(f"line {n}: unknown defect type code {code} (expected 1..6)")
        boxes.append((TYPES[code], min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), code))
    return boxes


class DeepPCBAdapter(SourceAdapter):
    id = "deeppcb"
    expected = "PCBData/group<G>/<G>/<id>_test.jpg with group<G>/<G>_not/<id>.txt and the trainval.txt/test.txt lists"

    class Options(AdapterOptions):
        templates: bool = Field(True, description="Also ingest the defect-free template images.")

    labels = (*TYPES.values(), TEMPLATE)

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        self.pcbdata = self._pcbdata()
        return self.pcbdata.parent

    def _pcbdata(self) -> Path:
        if any(d.name.lower().startswith("group") for d in sorted_dirs(self.root)):
            return self.root
        found = resolve_ci(self.root, "PCBData")
        if found is not None and found.is_dir():
            return found
        raise RootError(f"{self.root}: neither PCBData/ nor group*/ folders found (is this the DeepPCB root?)")

    def _read_lists(self, pcbdata: Path) -> Iterator[tuple[str, str, str, str | None, int]]:
        """(list name, our split, listed image path, listed annotation path or None, line number)."""
        for name, split in LISTS:
            path = resolve_ci(pcbdata, name)
            if path is None or not path.is_file():
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                fields = line.replace("\\", "/").split()
                if fields:
                    yield name, split, fields[0], fields[1] if len(fields) > 1 else None, n

    def samples(self) -> Iterator[RawSample | Quarantined]:
        pcbdata = self.pcbdata
        prefix = pcbdata.name
        with_templates = self.options.get("templates", True) not in (False, "false", "no", 0)

        # pair id ("group20085/20085/20085000") -> (list name, split, listed annotation)
        listed: dict[str, tuple[str, str, str | None]] = {}
        for list_name, split, image, ann, n in self._read_lists(pcbdata):
            stem = image.rsplit(".", 1)[0]
            for suffix in ("_test", "_temp"):
                stem = stem[: -len(suffix)] if stem.endswith(suffix) else stem
            pair = stem.lower()
            if pair in listed:
                continue
            listed[pair] = (list_name, split, ann)
            if resolve_ci(pcbdata, f"{stem}_test.jpg") is None:
                yield Quarantined(source=self.source_id, path=f"{prefix}/{image}",
                                  reason=f"listed in {list_name} line {n} but {stem}_test.jpg not found")

        for group in sorted_dirs(pcbdata):
            for sub in sorted_dirs(group):
                if sub.name.lower().endswith("_not"):
                    continue
                tests = sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")
                               and p.name.lower().endswith("_test.jpg"))
                for test in tests:
                    yield from self._pair(pcbdata, group, sub, test, listed, with_templates)

    def _pair(self, pcbdata: Path, group: Path, sub: Path, test: Path, listed: dict,
              with_templates: bool) -> Iterator[RawSample | Quarantined]:
        pid = test.name[: -len("_test.jpg")]
        pair = f"{group.name}/{sub.name}/{pid}"
        rel = test.relative_to(self.base).as_posix()
        if pair.lower() in listed:
            list_name, split, ann_rel = listed[pair.lower()]
            common = dict(source_split=list_name[: -len(".txt")], split=split, split_origin="official")
        else:
            ann_rel = None
            common = dict(source_split="", split=self.seeded(pair), split_origin="seeded")
        ann = resolve_ci(pcbdata, ann_rel) if ann_rel else None
        if ann is None:
            ann = resolve_ci(group, f"{sub.name}_not/{pid}.txt")
        if ann is None or not ann.is_file():
            yield Quarantined(source=self.source_id, path=rel,
                              reason=f"annotation {group.name}/{sub.name}_not/{pid}.txt not found")
        else:
            try:
                boxes = parse_boxes(ann)
            except (AnnotationError, OSError) as exc:
                yield Quarantined(source=self.source_id, path=rel,
                                  reason=f"annotation {ann.relative_to(self.base).as_posix()}: {exc}")
            else:
                yield RawSample(
                    rel_path=rel, product="pcb", label="defective",
                    source_labels=list(dict.fromkeys(b[0] for b in boxes)) or ["defective"],
                    boxes=[b[:5] for b in boxes],
                    attributes={"pair": pid, "type_codes": sorted({b[5] for b in boxes})}, **common,
                )
        if with_templates:
            template = resolve_ci(sub, f"{pid}_temp.jpg")
            if template is not None:
                yield RawSample(
                    rel_path=template.relative_to(self.base).as_posix(), product="pcb", label="normal",
                    source_labels=[TEMPLATE], attributes={"pair": pid, "template_of": rel}, **common,
                )
