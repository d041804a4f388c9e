"""Pascal VOC annotation XML (NEU-DET, GC10-DET, PKU-Market-PCB, the generic `voc` adapter).

Tolerant reading: a missing `<size>` is allowed (the image decides), coordinates may be floats,
objects without a usable box are reported rather than silently dropped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


class VocError(ValueError):
    """The XML file is unusable; the message names the reason (the caller adds the file)."""


@dataclass
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
    difficult: bool = False


@dataclass
class VocAnnotation:
    filename: str | None
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)


def _text(node: ET.Element | None, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text and child.text.strip() else None


def _num(node: ET.Element | None, tag: str) -> float | None:
    value = _text(node, tag)
    try:
        return float(value) if value is not None else None
    except ValueError:
        raise VocError(f"<{tag}> is not a number: {value!r}") from None


def parse_voc(path: Path, inclusive: bool = True) -> VocAnnotation:
    """Parse one VOC file. `inclusive`: VOC corners are inclusive pixel indices, so x1 + 1 is the
    exclusive edge (the convention of the original VOC devkit and of NEU-DET/GC10/PKU)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise VocError(f"not readable VOC XML: {exc}") from None
    size = root.find("size")
    w, h = _num(size, "width"), _num(size, "height")
    ann = VocAnnotation(filename=_text(root, "filename"), width=int(w) if w else None, height=int(h) if h else None)
    for i, obj in enumerate(root.iter("object")):
        name = _text(obj, "name")
        bnd = obj.find("bndbox")
        coords = [_num(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if not name or bnd is None or any(c is None for c in coords):
            raise VocError(f"object {i} has no name or an incomplete <bndbox>")
        x0, y0, x1, y1 = coords
        if inclusive:
            x1, y1 = x1 + 1, y1 + 1
        if x1 <= x0 or y1 <= y0:
            raise VocError(f"object {i} ({name}) has an empty box {coords}")
        ann.objects.append(VocObject(name, (x0, y0, x1, y1), (_text(obj, "difficult") or "0") == "1"))
    return ann
