"""Caption checks against the record's labels and the style guide, for every caption source.

The same checks judge template drafts, LLM drafts and expert edits (the review app calls
`check_record`): the caption names the record's defect type (or a taxonomy synonym), claims no
defect on a normal image, states a location that agrees with the mask, has a length within the
style guide's range, and carries no leftover markup. A structured LLM answer (`stated`: the defect
terms, location and severity the model says it wrote) is checked too.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..record import Record
from ..taxonomy import (
    GUIDELINES_DIR,
    Taxonomy,
    load_taxonomy,
    norm_label,
    taxonomy_path,
)
from .template import GENERIC_DEFECTS, word_count

CHECKS_VERSION = "1"
DEFAULT_RANGE = (30, 60)
GRID_CELLS = ("upper left", "upper center", "upper right", "center left", "center", "center right",
              "lower left", "lower center", "lower right")
_GENERIC_WORDS = ("defect", "defects", "anomaly", "anomalies", "anomalous", "flaw", "flaws", "damage", "damaged")
_NEGATION = re.compile(r"\b(?:no|not|without|free of|free from|absence of|lacks?|neither|nor|never)\b[^.;:!?]*",
                       re.IGNORECASE)
_DEFECT_FREE = re.compile(r"\b(?:defect|flaw|damage|blemish)[\s-]*free\b", re.IGNORECASE)
_CLEAN_STATEMENT = re.compile(
    r"\b(?:no (?:visible |apparent |detectable |obvious )?(?:defects?|flaws?|anomal(?:y|ies)|damage)"
    r"|(?:defect|flaw|damage|blemish)[\s-]*free|free (?:of|from) (?:any |visible )?(?:defects?|flaws?|damage))\b",
    re.IGNORECASE)
_LIKE_SUFFIX = re.compile(r"^[\s]*-?\s*like\b", re.IGNORECASE)
_MARKUP = [
    (re.compile(r"[*#`_~]{1,}|<[^>]+>|\[[^\]]*\]\([^)]*\)"), "markdown or HTML markup"),
    (re.compile(r"[{}\[\]]"), "brackets or JSON leftovers"),
    (re.compile(r"(?m)^\s*(?:[-*\u2022]|\d+[.)])\s"), "a list"),
    (re.compile(r"[\"\u201c\u201d]"), "quotation marks"),
    (re.compile(r"\n"), "line breaks"),
    (re.compile(r"^\s*(?:caption|here is|sure|certainly)\b\s*[:,!]?", re.IGNORECASE), "a preamble"),
    (re.compile(r"\bI\b(?!-)|\b(?i:we|my|our)\b"), "first person"),
    (re.compile(r"\b(?:it seems|seems to|perhaps|possibly|might be|may be|probably|likely)\b", re.IGNORECASE),
     "hedging"),
]
_GRID_PAIR = re.compile(r"\b(upper|top|lower|bottom|center|centre|middle)[\s-]+(left|right|center|centre|middle)\b",
                        re.IGNORECASE)
_GRID_SINGLE = re.compile(r"\b(?:center|centre|middle)\b", re.IGNORECASE)
_ROW = {"upper": "upper", "top": "upper", "lower": "lower", "bottom": "lower", "center": "center",
        "centre": "center", "middle": "center"}
_COL = {"left": "left", "right": "right", "center": "center", "centre": "center", "middle": "center"}
_NOT_LOCALIZED = re.compile(r"\bnot (?:annotated|localized|localised|known)\b|\bunknown location\b", re.IGNORECASE)


@lru_cache(maxsize=4)
def _taxonomy(env_value: str | None) -> Taxonomy:
    return load_taxonomy(taxonomy_path())


def taxonomy() -> Taxonomy:
    """The taxonomy, cached by IMDD_TAXONOMY as set (load_taxonomy resolves the path on every call)."""
    return _taxonomy(os.environ.get("IMDD_TAXONOMY"))


def style_guide_path() -> Path:
    return GUIDELINES_DIR / "caption_style.md"


@lru_cache(maxsize=4)
def _length_range(path: Path) -> tuple[int, int]:
    try:
        text = path.read_text()
    except OSError:
        return DEFAULT_RANGE
    m = re.search(r"\*\*Length\*\*:\s*(\d+)\s*(?:to|-|–)\s*(\d+)\s*words", text)
    return (int(m.group(1)), int(m.group(2))) if m else DEFAULT_RANGE


def length_range() -> tuple[int, int]:
    """The (min, max) word range of the caption style guide ("**Length**: 30 to 60 words")."""
    return _length_range(style_guide_path())


@dataclass
class CheckResult:
    """`passed` when every check passed; `results` name -> bool; `reasons` say what to fix."""

    results: dict[str, bool] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(self.results.values())

    def add(self, name: str, ok: bool, reason: str | None = None) -> None:
        self.results[name] = self.results.get(name, True) and ok
        if not ok and reason:
            self.reasons.append(reason)

    def as_meta(self) -> dict[str, Any]:
        return {"passed": self.passed, "results": dict(self.results), "reasons": list(self.reasons),
                "version": CHECKS_VERSION}


# -- terms ---------------------------------------------------------------------------------------
def _human(text: str) -> str:
    return re.sub(r"[_\s-]+", " ", text).strip().lower()


@lru_cache(maxsize=8192)
def _term_pattern(term: str) -> re.Pattern:
    words = [re.escape(w) for w in _human(term).split()]
    return re.compile(r"\b" + r"[\s_-]+".join(words) + r"(?:s|es|ed|ing)?\b", re.IGNORECASE)


def _resolve(tax: Taxonomy, source: str, label: str) -> str | None:
    if label in tax.defect_types:
        return label
    return tax.resolve(source, label).type


def defect_terms(record: Record, tax: Taxonomy | None = None) -> list[tuple[str, set[str]]]:
    """Per defect type of the record: (display name, accepted spellings). Generic types accept 'defect'."""
    tax = tax or taxonomy()
    out: list[tuple[str, set[str]]] = []
    seen: set[str] = set()
    for label in record.defect_types:
        tid = _resolve(tax, record.source, label)
        ident = tid or norm_label(label)
        if ident in seen:
            continue
        seen.add(ident)
        terms = {_human(label)}
        # the source's own spelling of this type is the right word for it (captions may keep it)
        terms |= {_human(sl) for sl in record.source_labels if tid and _resolve(tax, record.source, sl) == tid}
        if tid:
            entry = tax.defect_types.get(tid) or {}
            terms |= {_human(tid), _human(entry.get("name") or tid)}
            terms |= {_human(str(s)) for s in entry.get("synonyms") or []}
        generic = tid in ("anomaly", "structural_anomaly", "logical_anomaly") or _human(label) in GENERIC_DEFECTS
        if generic or not tid and not terms - GENERIC_DEFECTS:
            terms |= {"defect", "anomaly", "anomalous", "flaw"}
        if tid == "multiple_defects":
            terms |= {"defects", "combined", "multiple", "several"}
        name = _human((tax.defect_types.get(tid) or {}).get("name") or label) if tid else _human(label)
        out.append((name, {t for t in terms if t}))
    return out


_TYPE_NAMES: dict[int, tuple[str, ...]] = {}


def _all_type_names(tax: Taxonomy) -> tuple[str, ...]:
    """Defect type ids and names (not synonyms: many are everyday words such as 'center' or 'color')."""
    if id(tax) in _TYPE_NAMES:
        return _TYPE_NAMES[id(tax)]
    names = set()
    for tid, entry in tax.defect_types.items():
        if tid in ("anomaly", "multiple_defects", "logical_anomaly", "structural_anomaly"):
            continue
        names |= {_human(tid), _human(entry.get("name") or tid)}
    _TYPE_NAMES[id(tax)] = tuple(sorted(names, key=len, reverse=True))
    return _TYPE_NAMES[id(tax)]


_ANY_TYPE_NAME: dict[int, re.Pattern] = {}


def _any_type_name(tax: Taxonomy) -> re.Pattern:
    """One pattern matching wherever any type name might: a cheap first pass before the per-name one."""
    if id(tax) not in _ANY_TYPE_NAME:
        alternatives = "|".join(_term_pattern(n).pattern[2:-2] for n in _all_type_names(tax))
        _ANY_TYPE_NAME[id(tax)] = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)
    return _ANY_TYPE_NAME[id(tax)]


def _names(text: str, term: str) -> bool:
    for m in _term_pattern(term).finditer(text):
        if not _LIKE_SUFFIX.match(text[m.end():]):  # "a scratch-like mark" describes a shape, not the type
            return True
    return False


def _affirmative(text: str) -> str:
    """The caption with negated clauses ("no scratches or cracks", "defect-free") removed."""
    return _NEGATION.sub(" ", _DEFECT_FREE.sub(" ", text))


def stated_locations(text: str) -> list[str]:
    """Grid cells a caption states: 'top left' -> 'upper left', 'the centre' -> 'center'."""
    found, spans = [], []
    for m in _GRID_PAIR.finditer(text):
        row, col = _ROW[m.group(1).lower()], _COL[m.group(2).lower()]
        if row == "center" and col == "center":
            cell = "center"
        elif row == "center":
            cell = f"center {col}"
        elif col == "center" and m.group(1).lower() in ("center", "centre", "middle"):
            cell = "center"
        else:
            cell = f"{row} {col}"
        found.append(cell)
        spans.append(m.span())
    for m in _GRID_SINGLE.finditer(text):
        if not any(a <= m.start() < b for a, b in spans):
            found.append("center")
    return list(dict.fromkeys(found))


def _normalize_location(value: str) -> list[str]:
    cells = stated_locations(value)
    return cells or ([] if _NOT_LOCALIZED.search(value) or not value.strip() else [value.strip().lower()])


# -- the checks ----------------------------------------------------------------------------------
def disallowed_characters(text: str, limit: int = 5) -> list[str]:
    """The control, format (invisible, bidi) and surrogate code points in `text`, as `U+XXXX`, first `limit`.

    One rule for every caption text: Unicode categories Cc, Cf, Cs and Co (NUL, BEL, the ESC of ANSI
    escapes, U+202E, U+200B, lone surrogates, private use), except tab, newline and carriage return,
    which are whitespace that the writers normalise. Drafts fail `no_markup` on them and the review
    app refuses them in an expert's text.
    """
    if text.isprintable():  # fast path: every C* code point is non-printable
        return []
    found: list[str] = []
    for ch in text:
        if ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            name = f"U+{ord(ch):04X}"
            if name not in found:
                found.append(name)
                if len(found) >= limit:
                    break
    return found


def check_caption(record: Record, text: str | None, stated: dict | None = None,
                  tax: Taxonomy | None = None) -> CheckResult:
    """Check one caption text (and optionally the LLM's structured statement) against the record."""
    tax = tax or taxonomy()
    result = CheckResult()
    text = (text or "").strip()
    if not text:
        result.add("not_empty", False, "the caption is empty")
        return result
    lo, hi = length_range()
    n = word_count(text)
    result.add("length", lo <= n <= hi, f"the caption has {n} words; the style guide asks for {lo} to {hi}")
    bad = [why for pattern, why in _MARKUP if pattern.search(text)]
    hidden = disallowed_characters(text)
    if hidden:
        bad.append(f"control or invisible characters ({', '.join(hidden)})")
    result.add("no_markup", not bad, f"the caption contains {', '.join(bad)}; write plain sentences")
    affirmative = _affirmative(text)
    stated = stated or {}
    stated_terms = [str(t) for t in stated.get("defect_terms") or [] if str(t).strip()]
    if record.label == "normal":
        clean = bool(_CLEAN_STATEMENT.search(text))
        claimed = ([n for n in _all_type_names(tax) if _names(affirmative, n)]
                   if _any_type_name(tax).search(affirmative) else [])
        claimed += [w for w in _GENERIC_WORDS if re.search(rf"\b{w}\b", affirmative, re.IGNORECASE)]
        ok = clean and not claimed and not stated_terms
        why = []
        if not clean:
            why.append("say explicitly that the image shows no visible defects")
        if claimed or stated_terms:
            why.append(f"the image is defect-free but the caption claims {', '.join(dict.fromkeys(claimed + stated_terms))}")
        result.add("no_defect_on_normal", ok, "; ".join(why))
    else:
        missing = [name for name, terms in defect_terms(record, tax)
                   if not any(_names(affirmative, t) for t in terms)]
        result.add("names_defect", not missing,
                   f"name the defect type {' and '.join(repr(m) for m in missing)} (or a synonym of it)")
        if stated_terms:
            accepted = set().union(*(terms for _, terms in defect_terms(record, tax))) if record.defect_types else set()
            unknown = [t for t in stated_terms if _human(t) not in accepted
                       and not any(_names(t, a) or _names(a, _human(t)) for a in accepted)]
            result.add("stated_defects_match_labels", not unknown,
                       f"the labels do not support the stated defect(s) {', '.join(unknown)}")
        a = record.attributes
        cells = [c for c in stated_locations(affirmative)]
        if stated.get("location"):
            cells += _normalize_location(str(stated["location"]))
        cells = list(dict.fromkeys(cells))
        if a.basis is None:
            result.add("location_agrees", not cells,
                       f"no mask or box localizes the defect, but the caption states {', '.join(cells)}; "
                       "say the location is not annotated")
        else:
            allowed = set(a.locations) | ({a.location} if a.location else set())
            wrong = [c for c in cells if c not in allowed]
            result.add("location_agrees", not wrong,
                       f"the mask puts the defect in {', '.join(sorted(allowed)) or 'no cell'}, "
                       f"not {', '.join(wrong)}")
        severity = stated.get("severity")
        if severity and a.severity:
            result.add("severity_agrees", str(severity).lower() == a.severity,
                       f"the mask-derived severity is {a.severity}, not {severity}")
    return result


def check_record(record: Record, tax: Taxonomy | None = None) -> CheckResult:
    """Check the record's current caption (template, LLM or expert); what the review app calls."""
    stated = (record.caption_meta or {}).get("stated") if record.caption_source == "llm" else None
    return check_caption(record, record.caption, stated, tax)


def check_workspace(catalog, source: str | None = None, sources: Iterable[str] = ("template", "expert"),
                    on_record: Callable[[Record], None] | None = None, batch: int = 500) -> dict:
    """Add check results to the caption_meta of captions that have none (or an older check version).

    Failing captions get `review_priority` 0 so the expert queue takes them first. Only the
    `checks`/`review_priority` keys of caption_meta change; captions themselves are never touched.
    """

    tax = taxonomy()
    kinds = set(sources)
    checked = failed = 0
    pending: dict[str, dict] = {}
    for record in catalog.iter_records(source=source):
        if record.caption is None or record.caption_source not in kinds:
            continue
        old = (record.caption_meta or {}).get("checks") or {}
        result = check_record(record, tax)
        meta = {**record.caption_meta, "checks": result.as_meta()}
        if not result.passed:
            meta["review_priority"] = 0
            failed += 1
        checked += 1
        if on_record:
            on_record(record)
        if old == meta["checks"] and meta == record.caption_meta:
            continue
        pending[record.key] = {"caption_meta": meta, "_expect_caption": record.caption}
        if len(pending) >= batch:
            catalog.write_captions(pending, allow_protected=True)
            pending.clear()
    catalog.write_captions(pending, allow_protected=True)
    return {"checked": checked, "check_failed": failed}
