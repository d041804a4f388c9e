"""LLM caption drafting against OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

One async loop, `concurrency` workers pulling records from a bounded queue (memory stays flat at
any catalog size). Per record: the cached answers decide the next step (`next_step`), so a rerun
after a crash, a kill or `--max-cost` sends only requests that were never answered. Every answer is
committed to `llm_answers` the moment it arrives; captions are written back in batches (they can
always be rebuilt from the answers). A draft that fails the checks is retried once with the reasons;
if it still fails it is kept as an LLM draft with its reasons and `review_priority` 0.

The API key comes from OPENAI_API_KEY only; it is handed to the client and never stored, logged
or printed by this module.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..catalog import Catalog
from ..record import Record
from ..store import Store
from .cache import (
    Answer,
    AnswerCache,
    apply_captions,
    cache_key,
    ensure_tables,
    is_protected,
)
from .checks import CheckResult, check_caption
from .pricing import Prices
from .prompt import (
    CaptionDraft,
    Prompt,
    build_messages,
    estimate_text_tokens,
    facts,
    load_prompt,
    mask_overlay,
    parse_draft,
    response_format,
    retry_messages,
)
from .template import TEMPLATE_VERSION, template_caption, word_count

log = logging.getLogger(__name__)
DEFAULT_MODEL = "gpt-4o-mini"
EST_OUTPUT_TOKENS = 110  # ~42 words of caption plus the JSON around it


class FatalError(RuntimeError):
    """The run cannot go on (bad key, unknown model): stop, keep what is done, report."""


class RecordError(RuntimeError):
    """This record could not be answered in this run (retries exhausted, a 4xx for this request)."""


@dataclass
class LLMOptions:
    model: str = DEFAULT_MODEL
    base_url: str | None = None
    vision: bool = False
    image_detail: str = "high"
    concurrency: int = 16
    max_cost: float | None = None
    limit: int | None = None
    where: str | None = None
    source: str | None = None
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_tokens: int = 400
    temperature: float | None = None
    response_format: str = "json_schema"  # falls back to json_object, then none, if the server refuses it
    dry_run: bool = False
    flush_every: int = 200

    def request_options(self) -> dict:
        """What changes the answer (part of the cache key): not concurrency, timeouts or budgets."""
        return {"vision": self.vision, "detail": self.image_detail if self.vision else None,
                "max_tokens": self.max_tokens, "temperature": self.temperature}


# -- selecting records ---------------------------------------------------------------------------
_WHERE_COLUMNS = ("SELECT key, source, split, label, caption_status, data, "
                  "json_extract(data, '$.product') AS product, json_extract(data, '$.domain') AS domain, "
                  "json_extract(data, '$.caption_source') AS caption_source FROM records")


def iter_candidates(catalog: Catalog, source: str | None = None, where: str | None = None,
                    page: int = 500) -> Iterator[Record]:
    """Records in key order, filtered by `--source` and `--where` (an SQL boolean expression over
    key, source, split, label, caption_status, caption_source, product, domain and data (JSON)).
    Read through a read-only connection, so a `--where` can never write."""
    if where and ";" in where:
        raise ValueError("--where: one SQL expression, no ';'")
    ro = sqlite3.connect(f"file:{catalog.path}?mode=ro", uri=True, timeout=60)
    try:
        conds, args = ["key > ?"], [""]
        if source:
            conds.append("source = ?")
            args.append(source)
        if where:
            conds.append(f"({where})")
        sql = f"SELECT key, data FROM ({_WHERE_COLUMNS}) WHERE {' AND '.join(conds)} ORDER BY key LIMIT {int(page)}"
        while True:
            try:
                rows = ro.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise ValueError(f"--where {where!r}: {exc}") from None
            if not rows:
                return
            for _, data in rows:
                yield Record.model_validate_json(data)
            args[0] = rows[-1][0]
    finally:
        ro.close()


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


# -- retries -------------------------------------------------------------------------------------
def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds: `retry-after-ms`, `retry-after` seconds, or an HTTP date."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / scale)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, base * 2**attempt)."""
    d = min(cap, base * (2 ** attempt))
    return random.uniform(d / 2, d)


CONNECTIONS_PER_CLIENT = 32


def make_clients(options: LLMOptions) -> list:
    """Async clients sharing the concurrency, at most 32 connections each: httpcore's pool does work
    linear in its size on every request, so one pool of 256 connections costs the client CPU."""
    n = max(1, -(-options.concurrency // CONNECTIONS_PER_CLIENT))
    per = -(-options.concurrency // n)
    return [make_client(options, connections=per) for _ in range(n)]


def make_client(options: LLMOptions, async_client: bool = True, connections: int | None = None):
    """The official openai client; key from OPENAI_API_KEY (a local --base-url may run without)."""
    try:
        import openai
    except ImportError:
        raise ValueError("caption --llm needs the openai package: pip install -e '.[llm]'") from None
    key = os.environ.get("OPENAI_API_KEY")
    base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not key:
        if not base_url:
            raise ValueError("OPENAI_API_KEY is not set (a local server without keys: pass --base-url)")
        key = "EMPTY"  # vLLM, Ollama and llama.cpp servers accept any key unless started with one
    try:
        import httpx2 as httpx  # the transport of openai >= 3
    except ImportError:  # pragma: no cover
        import httpx
    conns = max(connections or options.concurrency, 1)
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    if async_client:
        return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=options.timeout,
                                  http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=options.timeout))
    return openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=options.timeout)


def classify(exc: BaseException) -> tuple[str, float | None]:
    """('retry', retry-after) | ('format', None) | ('fatal', None) | ('record', None)."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return "retry", None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        after = retry_after_seconds(getattr(exc.response, "headers", None))
        if status == 429 or status >= 500 or status in (408, 409):
            return "retry", after
        if status in (400, 422) and re.search(r"response_format|json_schema|structured|schema", str(exc), re.IGNORECASE):
            return "format", None
        if status in (401, 403, 404):
            return "fatal", None
    return "record", None


def short_error(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = re.sub(r"\s+", " ", str(exc))[:200]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"


# -- the run -------------------------------------------------------------------------------------
class LLMRun:
    def __init__(self, catalog: Catalog, store: Store, options: LLMOptions, prices: Prices,
                 client: Any = None, on_record: Callable[[Record], None] | None = None,
                 on_total: Callable[[int], None] | None = None):
        self.catalog, self.store, self.opts, self.prices = catalog, store, options, prices
        self.clients = list(client) if isinstance(client, (list, tuple)) else [client] if client else []
        self.next_client = 0
        try:
            from openai.types.chat import ChatCompletion
        except ImportError:  # a dry run needs no client
            ChatCompletion = None
        self.chat_completion = ChatCompletion
        self.on_record = on_record
        self.on_total = on_total
        self.prompt = load_prompt()
        ensure_tables(catalog)
        self.cache = AnswerCache(catalog)
        self.format = options.response_format
        self.pause_until = 0.0
        self.stopped: str | None = None
        self.limited = False
        self.fatal: str | None = None
        self.pending: dict[str, dict] = {}
        self.spent = 0.0
        self.reserved = 0.0
        self.c = {"captioned": 0, "passed": 0, "failed_checks": 0, "unusable": 0, "retried_with_reasons": 0,
                  "from_cache": 0, "requests": 0, "transport_retries": 0, "errors": 0, "kept": 0, "already": 0,
                  "not_sent": 0, "input_tokens": 0, "output_tokens": 0}
        self.error_samples: list[str] = []

    # budget -----------------------------------------------------------------------------------
    def estimate(self, messages: list[dict]) -> tuple[int, int]:
        images = sum(1 for m in messages if isinstance(m["content"], list)
                     for p in m["content"] if p.get("type") == "image_url")
        return (estimate_text_tokens(messages) + images * self.prices.image_tokens(self.opts.image_detail),
                min(EST_OUTPUT_TOKENS, self.opts.max_tokens))

    def _reserve(self, messages: list[dict]) -> float | None:
        if self.stopped:
            return None
        est = self.prices.cost(*self.estimate(messages))
        if self.opts.max_cost is not None and self.spent + self.reserved + est > self.opts.max_cost:
            self.stopped = "max_cost"
            return None
        self.reserved += est
        return est

    # records ----------------------------------------------------------------------------------
    def prepare(self, record: Record) -> tuple[dict, str] | None:
        """(facts, cache key) of a record to draft, or None when it is protected or already drafted."""
        if is_protected(record):
            self.c["kept"] += 1
            return None
        record_facts = facts(record)
        ck = cache_key(record, record_facts, self.prompt.sha, self.opts.model, self.opts.request_options())
        if record.caption_source == "llm" and (record.caption_meta or {}).get("cache_key") == ck:
            self.c["already"] += 1
            return None
        if record.caption_source == "template" and (record.caption_meta or {}).get("cache_key") == ck:
            self.c["already"] += 1  # both attempts unusable earlier: the answers are paid, not re-sent
            return None
        return record_facts, ck

    def images(self, record: Record) -> list[tuple[bytes, str]] | None:
        if not self.opts.vision:
            return None
        data = self.store.read(record.image)
        out = [(data, record.image_format)]
        if record.mask:
            out.append((mask_overlay(data, self.store.read(record.mask)), "png"))
        return out

    def finish(self, record: Record, step: Step, ck: str, fresh: bool) -> None:
        fields_ = caption_fields(record, step, ck, self.prompt, self.opts)
        passed = fields_["caption_meta"]["checks"]["passed"]
        self.c["captioned"] += 1
        self.c["passed" if passed else "failed_checks"] += 1
        self.c["unusable"] += fields_["caption_source"] == "template"
        self.c["retried_with_reasons"] += step.attempt == 2
        self.c["from_cache"] += not fresh
        self.pending[record.key] = fields_
        if len(self.pending) >= self.opts.flush_every:
            self.flush()
        if self.on_record:
            self.on_record(record)

    def flush(self) -> None:
        if self.pending:
            apply_captions(self.catalog, self.pending)
            self.pending = {}

    async def one(self, record: Record, record_facts: dict, ck: str) -> None:
        answers = self.cache.get(ck)
        messages: list[dict] | None = None
        fresh = False
        while True:
            step = next_step(record, answers)
            if step.done:
                self.finish(record, step, ck, fresh)
                return
            if messages is None:
                messages = build_messages(record, record_facts, self.prompt, self.images(record), self.opts.image_detail)
            msgs = messages if step.attempt == 1 else retry_messages(messages, step.previous, step.reasons, self.prompt)
            answer = await self.send(record, ck, step.attempt, msgs)
            if answer is None:
                self.c["not_sent"] += 1
                return
            answers[step.attempt] = answer
            fresh = True

    async def send(self, record: Record, ck: str, attempt: int, messages: list[dict]) -> Answer | None:
        est = self._reserve(messages)
        if est is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            tries = 0
            while True:
                wait = self.pause_until - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.fatal:
                    return None
                body: dict[str, Any] = {"model": self.opts.model, "messages": messages,
                                        "max_tokens": self.opts.max_tokens}
                fmt = response_format(self.format)
                if fmt is not None:
                    body["response_format"] = fmt
                if self.opts.temperature is not None:
                    body["temperature"] = self.opts.temperature
                client = self.clients[self.next_client % len(self.clients)]
                self.next_client += 1
                try:
                    # The client's generic `post` with the documented request body: the same request as
                    # `chat.completions.create` without its per-call TypedDict walk over the messages,
                    # which costs more CPU than everything else here at hundreds of requests/s.
                    resp = await client.post("/chat/completions", body=body, cast_to=self.chat_completion,
                                             options={"headers": {"X-Imdd-Record": record.key,
                                                                  "X-Imdd-Request": f"{ck}:{attempt}"}})
                except Exception as exc:  # noqa: BLE001 - classified below
                    kind, after = classify(exc)
                    if kind == "format" and self.format != "none":
                        self.format = {"json_schema": "json_object", "json_object": "none"}[self.format]
                        log.warning("server refused the response format; falling back to %s", self.format)
                        continue
                    if kind == "fatal":
                        self.fatal = short_error(exc)
                        raise FatalError(self.fatal) from None
                    if kind == "record" or tries >= self.opts.max_retries:
                        raise RecordError(short_error(exc)) from None
                    delay = after if after is not None else backoff(tries, self.opts.backoff_base, self.opts.backoff_max)
                    if after is not None and getattr(exc, "status_code", None) == 429:
                        self.pause_until = max(self.pause_until, loop.time() + delay)  # everyone waits
                    tries += 1
                    self.c["transport_retries"] += 1
                    log.info("retrying %s after %.2fs: %s", record.key, delay, short_error(exc))
                    await asyncio.sleep(delay)
                    continue
                break
        finally:
            self.reserved -= est
        content = resp.choices[0].message.content if resp.choices else None
        usage = getattr(resp, "usage", None)
        est_in, _ = self.estimate(messages)
        n_in = int(getattr(usage, "prompt_tokens", None) or est_in)
        n_out = int(getattr(usage, "completion_tokens", None) or (len(content or "") // 4))
        cost = self.prices.cost(n_in, n_out)
        answer = Answer(cache_key=ck, attempt=attempt, record_key=record.key, model=getattr(resp, "model", None)
                        or self.opts.model, prompt_version=self.prompt.version, content=content,
                        input_tokens=n_in, output_tokens=n_out, cost_usd=cost, mode="sync", created_at=time.time())
        answer.model = self.opts.model  # the requested name (servers may report a resolved snapshot)
        self.cache.put(answer)  # durable before anything else: a kill after this never re-sends it
        self.spent += cost
        self.c["requests"] += 1
        self.c["input_tokens"] += n_in
        self.c["output_tokens"] += n_out
        return answer

    async def worker(self, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            if self.fatal or self.stopped:
                self.c["not_sent"] += 1
                continue
            record, record_facts, ck = item
            try:
                await self.one(record, record_facts, ck)
            except FatalError:
                continue
            except RecordError as exc:
                self.c["errors"] += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{record.key}: {exc}")

    async def run_async(self) -> None:
        n = max(1, self.opts.concurrency)
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * n)
        workers = [asyncio.create_task(self.worker(queue)) for _ in range(n)]
        taken = 0
        try:
            for record in iter_candidates(self.catalog, self.opts.source, self.opts.where):
                if self.fatal or self.stopped:
                    break
                prepared = self.prepare(record)
                if prepared is None:
                    continue
                if self.opts.limit is not None and taken >= self.opts.limit:
                    self.limited = True  # not `stopped`: what is queued still runs
                    break
                taken += 1
                await queue.put((record, *prepared))
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers, return_exceptions=True)
            self.flush()
            for client in self.clients:
                await client.close()

    def dry_run(self) -> dict:
        """Count and price what a run would send, sending nothing."""
        to_send = cached = 0
        tin = tout = 0
        for record in iter_candidates(self.catalog, self.opts.source, self.opts.where):
            prepared = self.prepare(record)
            if prepared is None:
                continue
            if self.opts.limit is not None and to_send + cached >= self.opts.limit:
                break
            record_facts, ck = prepared
            step = next_step(record, self.cache.get(ck))
            if step.done:
                cached += 1
                continue
            to_send += 1
            messages = build_messages(record, record_facts, self.prompt, None, self.opts.image_detail)
            a, b = self.estimate(messages)
            if self.opts.vision:
                a += self.prices.image_tokens(self.opts.image_detail) * (2 if record.mask else 1)
            tin, tout = tin + a, tout + b
        return {"to_send": to_send, "cached": cached, "estimated_input_tokens": tin, "estimated_output_tokens": tout,
                "estimated_cost_usd": round(self.prices.cost(tin, tout), 6),
                "estimated_batch_cost_usd": round(self.prices.cost(tin, tout, batch=True), 6),
                "note": "first attempts only; a draft that fails the checks costs one more request"}


def caption_llm(catalog: Catalog, store: Store, options: LLMOptions, prices: Prices, client: Any = None,
                on_record: Callable[[Record], None] | None = None) -> dict:
    """Draft LLM captions for the selected records; returns the run summary."""
    if options.max_cost is not None and not prices.known and not options.dry_run:
        raise ValueError(f"--max-cost needs a price for model {options.model!r}: pass --price-in/--price-out "
                         "or --prices FILE")
    run = LLMRun(catalog, store, options, prices, client=client, on_record=on_record)
    base = {"command": "caption", "mode": "llm", "model": options.model, "prompt_version": run.prompt.version,
            "prices": prices.summary(), "dry_run": options.dry_run}
    if options.dry_run:
        summary = {**base, **run.dry_run(), "kept": run.c["kept"], "already": run.c["already"]}
    else:
        run.clients = list(client) if isinstance(client, (list, tuple)) else [client] if client else make_clients(options)
        started = time.perf_counter()
        asyncio.run(run.run_async())
        elapsed = time.perf_counter() - started
        summary = {**base, **run.c, "cost_usd": round(run.spent, 6),
                   "stopped": run.stopped or ("limit" if run.limited else None), "error": run.fatal,
                   "error_samples": run.error_samples, "elapsed_s": round(elapsed, 3),
                   "requests_per_s": round(run.c["requests"] / elapsed, 2) if elapsed > 0 else None,
                   "response_format": run.format}
    summary["records"] = catalog.count()
    summary["uncaptioned"] = catalog.db.execute("SELECT COUNT(*) FROM records WHERE caption_status IS NULL").fetchone()[0]
    return summary
