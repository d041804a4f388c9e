"""Record selection and provenance for `caption --llm`: which records to draft, what each needs
next from its cached answers (`next_step`), and the caption fields built from those answers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..catalog import Catalog, CatalogReader
from ..record import Record
from .cache import Answer
from .checks import CheckResult, check_caption
from .llm_client import LLMOptions
from .prompt import CaptionDraft, Prompt, parse_draft
from .template import TEMPLATE_VERSION, template_caption, word_count


# -- selecting records ---------------------------------------------------------------------------
def in_partition(key: str, partition: tuple[int, int] | None) -> bool:
    """Whether client process `i` of `n` owns this record: crc32 of the key, modulo n."""
    return partition is None or zlib.crc32(key.encode()) % partition[1] == partition[0]


def count_candidates(catalog: Catalog, source: str | None = None, where: str | None = None) -> int:
    """How many records `--source` and `--where` select (the progress total of a run)."""
    with CatalogReader(catalog.path) as reader:
        return reader.count_where(source, where)


def iter_candidates(catalog: Catalog, source: str | None = None, where: str | None = None,
                    page: int = 500, partition: tuple[int, int] | None = None) -> Iterator[Record]:
    """Records in key order, filtered by `--source` and `--where` (an SQL boolean expression over
    key, source, split, label, caption_status, caption_source, product, domain and data (JSON)),
    and to partition `(i, n)` when given. Read through a read-only connection, so a `--where` can
    never write."""
    with CatalogReader(catalog.path) as reader:
        for key, data in reader.iter_where(source, where, page):
            if in_partition(key, partition):
                yield Record.model_validate_json(data)


# -- answers -> captions -------------------------------------------------------------------------
def evaluate(record: Record, content: str | None) -> tuple[CaptionDraft | None, CheckResult]:
    draft, why = parse_draft(content)
    if draft is None:
        result = CheckResult()
        result.add("valid_answer", False, why)
        return None, result
    result = check_caption(record, draft.caption, draft.model_dump())
    result.results = {"valid_answer": True, **result.results}
    return draft, result


@dataclass
class Step:
    """What a record needs next: `send` attempt N (with the reasons of the previous one), or `done`."""

    done: bool
    attempt: int
    previous: str | None = None
    reasons: list[str] = field(default_factory=list)
    answers: list[tuple[Answer, CaptionDraft | None, CheckResult]] = field(default_factory=list)


def next_step(record: Record, answers: dict[int, Answer]) -> Step:
    first = answers.get(1)
    if first is None:
        return Step(False, 1)
    d1, r1 = evaluate(record, first.content)
    if r1.passed:
        return Step(True, 1, answers=[(first, d1, r1)])
    second = answers.get(2)
    if second is None:
        return Step(False, 2, previous=first.content, reasons=r1.reasons, answers=[(first, d1, r1)])
    d2, r2 = evaluate(record, second.content)
    return Step(True, 2, answers=[(first, d1, r1), (second, d2, r2)])


def caption_fields(record: Record, step: Step, ck: str, prompt: Prompt, options: LLMOptions) -> dict[str, Any]:
    """The caption fields of a finished record, with provenance, from its answers only (deterministic)."""
    final_answer, final_draft, final_result = step.answers[-1]
    usage_in = sum(a.input_tokens for a, _, _ in step.answers)
    usage_out = sum(a.output_tokens for a, _, _ in step.answers)
    cost = round(sum(a.cost_usd for a, _, _ in step.answers), 8)
    meta: dict[str, Any] = {
        "generator": "llm", "source": "llm", "model": final_answer.model, "prompt_version": prompt.version,
        "prompt_sha": prompt.sha, "at": datetime.fromtimestamp(final_answer.created_at, timezone.utc).isoformat(),
        "attempts": step.attempt, "cache_key": ck, "vision": options.vision, "mode": final_answer.mode,
        "checks": final_result.as_meta(), "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
        "cost_usd": cost, "review_priority": 1 if final_result.passed else 0,
    }
    if len(step.answers) > 1:
        meta["first_attempt_reasons"] = step.answers[0][2].reasons
    draft = final_draft or next((d for _, d, _ in reversed(step.answers) if d is not None), None)
    if draft is None:  # no usable answer at all: keep the template text, say why, review it first
        text = template_caption(record)
        meta.update({"generator": "template", "source": "template", "version": TEMPLATE_VERSION,
                     "llm_failed": True, "words": word_count(text)})
        return {"caption": text, "caption_source": "template", "caption_status": "draft", "caption_meta": meta}
    if final_draft is None:  # the retry was unusable; the first draft (which failed checks) is kept
        meta["checks"] = step.answers[0][2].as_meta()
    meta["stated"] = {"defect_terms": draft.defect_terms, "location": draft.location, "severity": draft.severity}
    meta["words"] = word_count(draft.caption)
    return {"caption": draft.caption.strip(), "caption_source": "llm", "caption_status": "draft", "caption_meta": meta}

