"""What a decision means, without touching the database: validating a decision, resolving a double
review, and computing a record's caption fields (and labels) once an outcome applies."""

from __future__ import annotations

from typing import Optional

from ..caption.checks import disallowed_characters
from ..record import Record
from .common import DECISIONS, MAX_CAPTION_CHARS, REASONS, Invalid, category, guideline_version, run_checks, \
    snapshot, word_diff


def plain(text: str, field: str) -> str:
    """`text` if it holds no control or invisible characters (the caption checks' rule), else Invalid."""
    bad = disallowed_characters(text)
    if bad:
        raise Invalid(f"{field} contains control or invisible characters ({', '.join(bad)})")
    return text


def validate(decision, caption, reason, labels) -> tuple[str, Optional[str], Optional[str], Optional[dict]]:
    """The decision, its caption (whitespace folded), reason and labels, checked; else Invalid."""
    if decision not in DECISIONS:
        raise Invalid(f"decision must be one of {', '.join(DECISIONS)}")
    if caption is not None and not isinstance(caption, str):
        raise Invalid("caption must be a string")
    if decision == "edit":
        if not caption or not caption.strip():
            raise Invalid("an edit needs the edited caption")
        if len(caption) > MAX_CAPTION_CHARS:
            raise Invalid(f"caption longer than {MAX_CAPTION_CHARS} characters")
        caption = " ".join(plain(caption, "caption").split())
    if decision == "reject":
        if reason not in REASONS:
            raise Invalid(f"a reject needs a reason: one of {', '.join(REASONS)}")
    elif decision != "flag":
        reason = None
    elif reason is not None:
        reason = plain(str(reason)[:200], "reason")
    if labels:
        labels = validate_labels(labels)
    return decision, caption, reason, labels or None


def validate_labels(labels: dict) -> dict:
    """A label correction `{label, defect_types}` with canonical defect types; else Invalid."""
    if not isinstance(labels, dict):
        raise Invalid("labels must be an object with label and defect_types")
    from ..taxonomy import load_taxonomy

    label = labels.get("label", "defective")
    if label not in ("normal", "defective", "unknown"):
        raise Invalid("labels.label must be normal, defective or unknown")
    types = labels.get("defect_types") or []
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise Invalid("labels.defect_types must be a list of canonical defect types")
    known = load_taxonomy().defect_types
    bad = [str(i) for i, t in enumerate(types) if t not in known]
    if bad:
        raise Invalid(f"labels.defect_types[{', '.join(bad[:5])}]: not a canonical defect type "
                      "(see annotation_guidelines/taxonomy.yaml)")
    if label != "defective" and types:
        raise Invalid("a normal image has no defect types")
    return {"label": label, "defect_types": list(dict.fromkeys(types))}


def resolve(decisions: list[dict]) -> Optional[dict]:
    """The outcome when the reviews agree, else None (disputed)."""
    first = decisions[0]
    for other in decisions[1:]:
        if category(other["decision"]) != category(first["decision"]):
            return None
        if category(first["decision"]) == "accept" and " ".join((other["final"] or "").split()) != \
                " ".join((first["final"] or "").split()):
            return None
        if (other.get("labels") or None) != (first.get("labels") or None):
            return None
    edited = next((d for d in decisions if d["decision"] == "edit"), None)
    return dict(edited or first)


def after(record: Record, outcome: dict, reviewers: list[str], now: float) -> dict:
    """The record's caption fields (and labels) once the outcome is applied; `reviewers` decided it."""
    result = snapshot(record)
    meta = dict(result["caption_meta"])
    review = {"decision": outcome["decision"], "reviewers": reviewers, "at": now,
              "guideline_version": guideline_version()}
    if outcome["decision"] == "edit":
        result["caption"] = outcome["caption"]
        result["caption_source"] = "expert"
        result["caption_status"] = "verified"
        review.update(draft=record.caption, draft_source=record.caption_source,
                      diff=word_diff(record.caption or "", outcome["caption"]))
    elif outcome["decision"] == "accept":
        result["caption_status"] = "verified"
    else:
        result["caption_status"] = "rejected"
        review["reason"] = outcome["reason"]
    if outcome.get("labels"):
        review["label_correction"] = {"before": {"label": record.label, "defect_types": record.defect_types},
                                      "after": outcome["labels"]}
        result["label"] = outcome["labels"]["label"]
        result["defect_types"] = outcome["labels"]["defect_types"]
    meta["review"] = review
    result["caption_meta"] = meta
    if outcome["decision"] != "reject" and result["caption"]:
        probe = record.model_copy(update={k: result[k] for k in ("caption", "caption_source", "label",
                                                                  "defect_types")})
        checked = run_checks(probe)
        if checked is not None:
            meta["checks"] = checked
    return result
