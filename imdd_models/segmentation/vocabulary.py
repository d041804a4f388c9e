"""Defect words: the taxonomy's vocabulary as a caption term finder and class-name resolver (no NLP models).

The grounding loss needs the defect terms a caption mentions. ODISE extracts noun phrases with NLTK, whose
data is a runtime download; here the vocabulary is the taxonomy's (`annotation_guidelines/taxonomy.yaml`):
every canonical defect type id, its display name and its synonyms. A caption term counts when it appears as
whole words and is not
- negated ("shows no scratches, cracks or holes", "free of stains", "without cracks": to the clause's end),
- a comparison ("a scratch- or crack-like mark", "crack-shaped"),
- a word too common in captions to mean a defect there (`color`, `center`, `open`, `spot` ... see AMBIGUOUS),
- a generic type (`anomaly`, whose display name is the word "defect" that every caption uses).
The longest match wins ("oil spot" over "spot"), and each type is reported once, in caption order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from imdd_build.taxonomy import load_taxonomy, norm_label

GENERIC = frozenset({"anomaly", "multiple_defects", "logical_anomaly", "structural_anomaly"})
# Synonyms that are ordinary caption words far more often than defect names.
AMBIGUOUS = frozenset({
    "color", "colour", "colors", "center", "centre", "open", "short", "random", "loc", "cr", "hs", "scale",
    "spot", "spots", "print", "copper", "extra", "excess", "missing", "thread", "threads", "stuck", "flip",
    "flipped", "shifted", "uneven", "wear", "rough", "roughness", "liquid", "oil", "patch", "damage",
    "damaged", "shading", "mixed", "combined", "imprint", "misplaced", "bend", "bent", "broken", "cut", "cuts",
    "edge_loc", "edge_ring", "donut", "near_full", "nearfull", "punching", "crescent", "rolled_in", "wrong_type",
    "pill_type", "manipulated", "residue", "dirt", "dirty",
})
_NEGATORS = re.compile(r"\b(no|not|without|free of|none of|neither|nor|never|absence of|lacks?)\b")
_CLAUSE_END = re.compile(r"[.;:!?]|\b(but|while|whereas|although|except)\b")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Term:
    """A defect type found in a caption: the canonical id and the words that named it."""

    type: str
    text: str


_BUILT: dict[int, tuple] = {}


def _phrases() -> tuple[tuple[tuple[str, ...], str], ...]:
    """(word tuple, type id) for every usable spelling, longest first (built once per loaded taxonomy)."""
    tax = load_taxonomy()  # itself cached per file: the same object while the file is the same
    if id(tax) not in _BUILT:
        _BUILT.clear()
        _BUILT[id(tax)] = _build_phrases(tax)
    return _BUILT[id(tax)]


def _build_phrases(tax) -> tuple[tuple[tuple[str, ...], str], ...]:
    out: dict[tuple[str, ...], str] = {}
    for tid, entry in tax.defect_types.items():
        if tid in GENERIC:
            continue
        spellings = [tid, entry.get("name") or tid, *(entry.get("synonyms") or [])]
        for spelling in spellings:
            key = norm_label(str(spelling))
            if not key or key in AMBIGUOUS or len(key) < 3:
                continue
            words = tuple(key.split("_"))
            out.setdefault(words, tid)  # first owner keeps a spelling (ids before synonyms of others)
    return tuple(sorted(out.items(), key=lambda kv: -len(kv[0])))


def _negated_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _NEGATORS.finditer(text):
        end = _CLAUSE_END.search(text, m.end())
        spans.append((m.start(), end.start() if end else len(text)))
    return spans


def caption_terms(caption: str) -> list[Term]:
    """Defect types a caption asserts, in order of first mention (see the module docstring for the rules)."""
    text = (caption or "").lower()
    words = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
    negated = _negated_spans(text)
    taken = [False] * len(words)
    found: dict[str, tuple[int, str]] = {}
    for phrase, tid in _phrases():
        n = len(phrase)
        for i in range(len(words) - n + 1):
            if any(taken[i:i + n]) or tuple(w for w, _, _ in words[i:i + n]) != phrase:
                continue
            start, end = words[i][1], words[i + n - 1][2]
            for j in range(i, i + n):
                taken[j] = True
            after = text[end:end + 12]
            if re.match(r"-?\s*(like|shaped)\b", after) or re.match(r"-\s+or\s+\w+-(like|shaped)\b", after):
                continue  # "scratch-like", "a scratch- or crack-like mark": a comparison, not a claim
            if any(a <= start < b for a, b in negated):
                continue
            if tid not in found or start < found[tid][0]:
                found[tid] = (start, text[start:end])
    return [Term(tid, span) for tid, (_, span) in sorted(found.items(), key=lambda kv: kv[1][0])]


def class_display_name(name: str) -> str:
    """How a class is put into words for the text encoder: a taxonomy id or synonym -> its display name,
    anything else as given (underscores as spaces), so classes outside the taxonomy work too."""
    tax = load_taxonomy()
    resolved = tax.resolve("", name)
    if resolved.type:
        return tax.defect_name(resolved.type)
    return name.replace("_", " ").strip()


def canonical_type(name: str) -> str | None:
    """The taxonomy type id a class name or synonym stands for, else None."""
    return load_taxonomy().resolve("", name).type


def known_spellings() -> dict[str, str]:
    """Every usable spelling of the taxonomy (ids, display names, synonyms, normalised) -> its type id."""
    tax = load_taxonomy()
    out: dict[str, str] = {}
    for tid, entry in tax.defect_types.items():
        for spelling in (tid, entry.get("name") or tid, *(entry.get("synonyms") or [])):
            key = norm_label(str(spelling))
            if key:
                out.setdefault(key, tid)
    return out


def closest_names(name: str, candidates, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates closest to `name` in spelling (difflib ratio, best first)."""
    import difflib
    key = norm_label(name) or name
    pool = {norm_label(c) or c: c for c in candidates}
    return [pool[m] for m in difflib.get_close_matches(key, list(pool), n=n, cutoff=cutoff)]


def check_trained_names(trained: list[str], counts: dict[str, int], pool_types, where: str) -> None:
    """RunError (one line) for a trained class that has no training sample, naming the closest known names
    (the data's defect types first, then taxonomy spellings)."""
    from imdd_build.errors import RunError
    empty = [c for c in trained if not counts.get(c)]
    if not empty:
        return
    name = empty[0]
    if not pool_types:  # the split holds no defect records at all: no spelling would help
        raise RunError(f"--classes: {name!r} has no training sample in {where}, which holds no defect records; "
                       "train on a split that has them (--split)")
    near = closest_names(name, sorted(pool_types))
    near += [s for s in closest_names(name, known_spellings()) if s not in near]
    hint = f"; closest known names: {', '.join(near[:5])}" if near else ""
    more = f" ({len(empty)} such names: {', '.join(empty)})" if len(empty) > 1 else ""
    raise RunError(f"--classes: {name!r} has no training sample in {where}{more}{hint}")


def near_miss(name: str) -> str | None:
    """A taxonomy term/synonym within a small edit distance of a name that is not itself a known spelling
    (a likely typo: `scrach` -> `scratch`), else None."""
    import difflib
    key = norm_label(name)
    spellings = known_spellings()
    if not key or key in spellings or canonical_type(name):
        return None
    for cand in difflib.get_close_matches(key, list(spellings), n=5, cutoff=0.75):
        if _edit_distance(key, cand) <= max(1, min(2, len(key) // 4)):
            return cand
    return None


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) between two strings."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def class_wordings(name: str, limit: int = 3) -> list[str]:
    """How a class may be worded: its display name, then taxonomy synonyms that read as words (not ambiguous,
    not a plural or inflection of one already taken), at most `limit`; a name outside the taxonomy as given."""
    tax = load_taxonomy()
    tid = tax.resolve("", name).type
    if not tid:
        return [name.replace("_", " ").strip()]
    out = [tax.defect_name(tid)]
    for syn in tax.defect_types[tid].get("synonyms") or []:
        key = norm_label(str(syn))
        words = key.replace("_", " ")
        if len(out) >= limit:
            break
        if not key or key in AMBIGUOUS or len(key) < 3 or any(_same_stem(words, w) for w in out):
            continue
        out.append(words)
    return out


def _same_stem(a: str, b: str) -> bool:
    a, b = a.lower().replace("-", " "), b.lower().replace("-", " ")
    stem = lambda s: " ".join(w.rstrip("s").removesuffix("ed").removesuffix("ing").removesuffix("e")  # noqa: E731
                              for w in s.split())
    return stem(a) == stem(b)


def near_miss_warnings(names: list[str]) -> list[str]:
    """`--classes` of predict and calibrate: one warning line per name that looks like a typo of a known term."""
    return [f"--classes: {c!r} is not a taxonomy term but close to {t!r}; did you mean {t!r}?"
            for c in names for t in [near_miss(c)] if t]
