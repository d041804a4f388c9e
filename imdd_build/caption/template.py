"""The offline template captioner: a fluent 30-60 word caption from the record's facts.

Deterministic: phrasing variants are picked by a hash of the key, so the same record always gets
the same caption, while the corpus does not repeat one sentence a million times.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from ..catalog import Catalog
from ..record import Record
from ..taxonomy import defect_name, domain_name, load_taxonomy

TEMPLATE_VERSION = "2"
MIN_WORDS, MAX_WORDS = 30, 60
GENERIC_DEFECTS = {"bad", "anomaly", "anomalous", "defect", "defective", "ko", "ng", "nok", "abnormal"}
_WORD = re.compile(r"[A-Za-z0-9%.\-']+")


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def _pick(key: str, slot: str, options: tuple[str, ...]) -> str:
    digest = hashlib.sha256(f"{key}|{slot}".encode()).digest()
    return options[digest[0] % len(options)]


def _article(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _human(name: str) -> str:
    return re.sub(r"[_\-]+", " ", name).strip().lower()


def _spoken(defect_type: str) -> str:
    """A canonical type by its taxonomy name ("edge-localized cluster"); other labels humanized."""
    if defect_type in load_taxonomy().defect_types:
        return defect_name(defect_type).lower()
    return _human(defect_type)


def defect_phrase(defect_types: list[str]) -> str:
    """"a scratch defect", "crack and hole defects", "several combined defects", "an unspecified defect"."""
    names = list(dict.fromkeys(_spoken(d) for d in defect_types if _human(d)))
    specific = [n for n in names if n not in GENERIC_DEFECTS]
    if not specific:
        return "an unspecified defect"
    if specific in (["combined"], ["multiple defects"]):
        return "several combined defects"
    if len(specific) == 1:
        name = specific[0]
        return _article(name if name.endswith(("defect", "damage")) else f"{name} defect")
    return ", ".join(specific[:-1]) + " and " + specific[-1] + " defects"


def _percent(fraction: float) -> str:
    pct = fraction * 100
    if pct < 0.5:
        return "less than 0.5%"
    if pct < 10:
        return f"about {pct:.1f}%".replace(".0%", "%")
    return f"about {round(pct)}%"


def _size_sentence(record: Record) -> str:
    a = record.attributes
    regions = "a single region" if a.regions == 1 else f"{a.regions} separate regions"
    shape = {
        "elongated": "thin and elongated, reading as a scratch- or crack-like mark",
        "compact": "compact and blob-like in outline",
        "scattered": "scattered over the surface as several small spots",
        "extensive": "spread over a large part of the object",
    }.get(a.shape or "", "irregular in outline")
    severity = {"minor": "a minor", "moderate": "a moderate", "severe": "a severe"}.get(a.severity or "", "an unknown")
    verb = _pick(record.key, "verb", ("covers", "occupies", "takes up"))
    return (f"It {verb} {regions} and {_percent(a.area_fraction)} of the visible surface, "
            f"{shape}, which indicates {severity} severity.")


def _location(record: Record) -> str:
    a = record.attributes
    if not a.location:
        return ""
    where = "the center" if a.location == "center" else f"the {a.location} area"
    if len(a.locations) >= 4:
        anchor = "around the center" if a.location == "center" else f"centred on {where}"
        return f", {anchor} and extending across much of the object"
    return _pick(record.key, "loc", (f" in {where}", f" located in {where}", f", visible in {where}"))


def template_caption(record: Record) -> str:
    """Compose the caption for one record (30-60 words)."""
    product = _human(record.product)
    domain = domain_name(record.domain)
    subject = product if domain in (product, "industrial product") else f"{product} ({domain})"
    shot = _pick(record.key, "shot", ("A close-up inspection photograph", "An industrial inspection image",
                                      "A high-resolution inspection image"))
    if record.label == "unknown":
        sentences = [
            f"{shot} of {_article(subject)}.",
            "The source gives no inspection label for this sample, so whether it shows a defect is not stated.",
            "It is kept as unlabelled data for self-supervised or semi-supervised training.",
        ]
    elif record.label == "normal":
        sentences = [
            f"{shot} of {_article(subject)} with no visible defects.",
            "The surface is intact, with uniform color and texture and a regular shape, and shows no scratches, "
            "cracks, holes, stains or contamination.",
            "It serves as a defect-free reference sample for this product.",
        ]
    else:
        defect = defect_phrase(record.defect_types)
        first = f"{shot} of {_article(subject)} showing {defect}{_location(record)}."
        if record.attributes.basis is None:
            body = "The exact location and extent of the defect are not annotated for this image."
        else:
            body = _size_sentence(record)
        rest = _pick(record.key, "rest", (
            "The remaining surface appears intact, with uniform color and texture.",
            "Apart from this flaw, the rest of the part looks normal and undamaged.",
            "Outside the defect, the material shows its usual color, texture and finish.",
        ))
        sentences = [first, body, rest]
    text = " ".join(sentences)
    if word_count(text) < MIN_WORDS:
        text += " The image was captured under controlled lighting for automated visual quality inspection."
    if word_count(text) > MAX_WORDS:
        text = " ".join(sentences[:2])
    if word_count(text) > MAX_WORDS and record.label == "defective":  # many defect types: the short form
        a = record.attributes
        first = f"An inspection image of {_article(subject)} showing {defect_phrase(record.defect_types)}{_location(record)}."
        if a.basis is None:
            text = first + " Their location and extent are not annotated."
        else:
            regions = "one region" if a.regions == 1 else f"{a.regions} regions"
            text = (f"{first} They cover {regions} and {_percent(a.area_fraction)} of the visible surface, "
                    f"{a.severity or 'unknown'} in severity.")
    return text


def caption_workspace(catalog: Catalog, force: bool = False, source: str | None = None,
                      on_record: Callable[[Record], None] | None = None, batch: int = 500) -> dict:
    """Draft template captions for records without one (all template drafts with `force`).

    Expert-edited and verified captions are never overwritten.
    """
    written = kept = 0
    pending: list[Record] = []
    for record in catalog.iter_records(source=source, uncaptioned=not force):
        if record.caption is not None and (record.caption_source != "template" or record.caption_status != "draft"):
            kept += 1
            continue
        text = template_caption(record)
        pending.append(record.model_copy(update={
            "caption": text, "caption_source": "template", "caption_status": "draft",
            "caption_meta": {"generator": "template", "version": TEMPLATE_VERSION, "words": str(word_count(text))},
        }))
        written += 1
        if on_record:
            on_record(record)
        if len(pending) >= batch:
            catalog.set_captions(pending)
            pending.clear()
    catalog.set_captions(pending)
    return {"command": "caption", "mode": "template", "captioned": written, "kept": kept,
            "records": catalog.count(), "uncaptioned": catalog.db.execute(
                "SELECT COUNT(*) FROM records WHERE caption_status IS NULL").fetchone()[0]}
