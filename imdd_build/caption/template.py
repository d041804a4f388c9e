"""The offline template captioner: a fluent 30-60 word caption from the record's facts.

Deterministic: phrasing variants are picked by a hash of the key, so the same record always gets
the same caption, while the corpus does not repeat one sentence a million times.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable

from ..catalog import Catalog
from ..record import Record
from ..taxonomy import defect_name, load_taxonomy, norm_label

TEMPLATE_VERSION = "3"
HIGH_RES_MIN_SIDE = 1024  # "high-resolution" only for originals at least this large on their short side
THIN_WIDTH = 0.05  # an elongated mark narrower than this share of the object's side reads as a thin line
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
    tax = load_taxonomy()
    if defect_type in tax.defect_types:
        return tax.cased(defect_name(defect_type).lower())
    return tax.cased(_human(defect_type))


def spoken_defects(record: Record) -> list[str]:
    """How the caption names the record's defects.

    The canonical name, except where the taxonomy merges several of this source's classes into one
    type and this record's own class does not contain that name (X-SDD's `iron_sheet_ash` is mapped
    to oxide scale with two oxide-scale classes): then the source's own term, which is true for it.
    """
    tax = load_taxonomy()
    names: list[str] = []
    for tid in record.defect_types:
        canonical = _spoken(tid)
        own = [label for label in record.source_labels if tax.resolve(record.source, label).type == tid]
        if tid not in tax.defect_types or len(tax.merged_into(record.source, tid)) < 2 or not own:
            names.append(canonical)
            continue
        accepted = {_human(tid), canonical.lower()}  # not the synonyms: the merged labels are listed there
        for label in own:
            term = _human(label)
            fits = any(re.search(rf"\b{re.escape(a)}\b", term) for a in accepted if a)
            names.append(canonical if fits else tax.cased(term))
    return list(dict.fromkeys(n for n in names if n))


def defect_phrase(defect_types: list[str]) -> str:
    """"a scratch defect", "crack and hole defects", "several combined defects", "an unspecified defect"."""
    return _phrase([_spoken(d) for d in defect_types if _human(d)])


def _phrase(spoken: list[str]) -> str:
    names = list(dict.fromkeys(spoken))
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


def _shape_words(a) -> str:
    """The measured shape in words. `elongated` says nothing about width: the width of an elongated
    mark is estimated from its area and elongation (w = sqrt(area / elongation) for a band), and
    only a narrow one is called thin or line-like."""
    if a.shape == "elongated":
        width = math.sqrt(max(a.area_fraction, 0.0) / max(a.elongation, 1.0))
        if width < THIN_WIDTH:
            return "thin and elongated, a narrow line-like mark"
        return "elongated and broad, a band-shaped area"
    return {
        "compact": "compact and blob-like in outline",
        "scattered": "scattered over the surface as several separate spots",
        "extensive": "spread over a large part of the object",
    }.get(a.shape or "", "irregular in outline")


def _size_sentence(record: Record) -> str:
    a = record.attributes
    regions = "a single region" if a.regions == 1 else f"{a.regions} separate regions"
    severity = f"by area it counts as {a.severity}" if a.severity else "its severity is not known"
    verb = _pick(record.key, "verb", ("covers", "occupies", "takes up"))
    return (f"It {verb} {regions} and {_percent(a.area_fraction)} of the visible surface, "
            f"{_shape_words(a)}; {severity}.")


def _location(record: Record) -> str:
    a = record.attributes
    if not a.location:
        return ""
    where = "the center" if a.location == "center" else f"the {a.location} area"
    if len(a.locations) >= 4:
        anchor = "around the center" if a.location == "center" else f"mostly in {where}"
        return f", {anchor} and extending across much of the object"
    return _pick(record.key, "loc", (f" in {where}", f" located in {where}", f", visible in {where}"))


def subject_of(record: Record) -> str:
    """What the image shows: the product as the registry or options name it, with its domain.

    A product that is a domain id (DeepPCB's `pcb`) is spoken by its domain name; an unknown product
    (a generic source without `--opt product=`) by the domain alone; proper terms keep their case."""
    tax = load_taxonomy()
    domain = tax.domain_name(record.domain)
    product = record.product
    if not product or norm_label(product) in ("unknown", "product"):
        return domain
    if product in tax.domains:
        return domain if product in tax.domain_path(record.domain) else tax.domain_name(product)
    name = tax.cased(_human(product))
    return name if norm_label(domain) in (norm_label(name), "industrial_product") else f"{name} ({domain})"


def _shot(record: Record) -> str:
    """The opening words; "high-resolution" only when the original image is (never from a name)."""
    high = min(record.orig_width, record.orig_height) >= HIGH_RES_MIN_SIDE
    return _pick(record.key, "shot", ("A close-up inspection photograph", "An industrial inspection image",
                                      "A high-resolution inspection image" if high else "A quality-inspection image"))


def template_caption(record: Record) -> str:
    """Compose the caption for one record (30-60 words)."""
    subject = subject_of(record)
    shot = _shot(record)
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
        defect = _phrase(spoken_defects(record))
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
        defects = _phrase(spoken_defects(record))
        first = f"An inspection image of {_article(subject)} showing {defects}{_location(record)}."
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

    Expert-edited and verified captions are never overwritten, not even by an edit that lands while
    this runs (`Catalog.write_captions` re-reads each record when it writes).
    """
    written = kept = 0
    pending: dict[str, dict] = {}
    for record in catalog.iter_records(source=source, uncaptioned=not force):
        if record.caption is not None and (record.caption_source != "template" or record.caption_status != "draft"):
            kept += 1
            continue
        text = template_caption(record)
        pending[record.key] = {
            "caption": text, "caption_source": "template", "caption_status": "draft",
            "caption_meta": {"generator": "template", "version": TEMPLATE_VERSION, "words": str(word_count(text))},
        }
        written += 1
        if on_record:
            on_record(record)
        if len(pending) >= batch:
            catalog.write_captions(pending)
            pending.clear()
    catalog.write_captions(pending)
    return {"command": "caption", "mode": "template", "captioned": written, "kept": kept,
            "records": catalog.count(), "uncaptioned": catalog.count_uncaptioned()}
