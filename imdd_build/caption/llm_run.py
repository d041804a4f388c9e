"""The synchronous `caption --llm` run: `LLMRun`, one async loop of `concurrency` workers pulling
records from a bounded queue, with the cost budget, answer caching, retries and caption flushing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..catalog import Catalog
from ..record import Record
from ..store import Store
from .cache import Answer, AnswerCache, apply_captions, cache_key, ensure_tables, is_protected
from .llm_client import FatalError, LLMOptions, RecordError, backoff, classify, request_body, short_error
from .llm_records import Step, caption_fields, iter_candidates, next_step
from .pricing import Prices
from .prompt import build_messages, estimate_text_tokens, facts, load_prompt, mask_overlay, retry_messages

log = logging.getLogger("imdd_build.caption.llm")
EST_OUTPUT_TOKENS = 110  # ~42 words of caption plus the JSON around it


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
                body = request_body(self.opts, messages, self.format)
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

