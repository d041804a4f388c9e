"""The synchronous `caption --llm` run: `LLMRun`, one async loop of `concurrency` workers pulling
records from a bounded queue, with the cost budget, answer caching, retries and caption flushing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from ..catalog import Catalog
from ..record import Record
from ..retry import backoff
from ..store import Store
from ..catalog import is_protected
from .cache import Answer, AnswerCache, cache_key
from .llm_client import FatalError, LLMOptions, RecordError, classify, request_body, short_error
from .llm_records import Step, caption_fields, iter_candidates, next_step
from .llm_state import RunState
from .llm_writer import CatalogWriter
from .pricing import Prices
from .prompt import build_messages, estimate_text_tokens, facts, load_prompt, mask_overlay, retry_messages

log = logging.getLogger("imdd_build.caption.llm")
EST_OUTPUT_TOKENS = 110  # ~42 words of caption plus the JSON around it


class LLMRun:
    def __init__(self, catalog: Catalog, store: Store, options: LLMOptions, prices: Prices,
                 client: Any = None, on_record: Callable[[Record], None] | None = None,
                 state: RunState | None = None, partition: tuple[int, int] | None = None):
        self.catalog, self.store, self.opts, self.prices = catalog, store, options, prices
        self.clients = list(client) if isinstance(client, (list, tuple)) else [client] if client else []
        self.next_client = 0
        self.on_record = on_record
        self.prompt = load_prompt()
        self.cache = AnswerCache(catalog)
        self.format = options.response_format
        # budget, limit, pause and stop: this process's own, or shared by the --processes clients
        self.state = state or RunState(options.max_cost, options.limit)
        self.partition = partition
        self.pending: dict[str, dict] = {}
        self.writer: CatalogWriter | None = None  # during run_async: answers and captions go through it
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
        est = self.prices.cost(*self.estimate(messages))
        return est if self.state.reserve(est) else None

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
            if self.writer is not None:
                self.writer.captions(self.pending)
            else:
                self.catalog.write_captions(self.pending)
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
        state = self.state
        cost = 0.0
        try:
            tries = 0
            while True:
                wait = state.pause_until() - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if state.fatal:
                    return None
                body = request_body(self.opts, messages, self.format)
                client = self.clients[self.next_client % len(self.clients)]
                self.next_client += 1
                try:
                    # The client's generic `post` with the documented request body: the same request as
                    # `chat.completions.create` without its per-call TypedDict walk over the messages
                    # and model construction of the answer, which cost more CPU than everything else
                    # here at hundreds of requests/s. The answer comes back as the parsed JSON object.
                    resp = await client.post("/chat/completions", body=body, cast_to=object,
                                             options={"headers": {"X-Imdd-Record": record.key,
                                                                  "X-Imdd-Request": f"{ck}:{attempt}"}})
                except Exception as exc:  # noqa: BLE001 - classified below
                    kind, after = classify(exc)
                    if kind == "format" and self.format != "none":
                        self.format = {"json_schema": "json_object", "json_object": "none"}[self.format]
                        log.warning("server refused the response format; falling back to %s", self.format)
                        continue
                    if kind == "fatal":
                        state.fail(short_error(exc))
                        raise FatalError(short_error(exc)) from None
                    if kind == "record" or tries >= self.opts.max_retries:
                        raise RecordError(short_error(exc)) from None
                    delay = after if after is not None else backoff(tries, self.opts.backoff_base, self.opts.backoff_max)
                    if after is not None and getattr(exc, "status_code", None) == 429:
                        state.pause(loop.time() + delay)  # everyone waits, in every client process
                    tries += 1
                    self.c["transport_retries"] += 1
                    log.info("retrying %s after %.2fs: %s", record.key, delay, short_error(exc))
                    await asyncio.sleep(delay)
                    continue
                break
            content, usage = completion_parts(resp)
            est_in, _ = self.estimate(messages)
            n_in = int(usage.get("prompt_tokens") or est_in)
            n_out = int(usage.get("completion_tokens") or (len(content or "") // 4))
            cost = self.prices.cost(n_in, n_out)
        finally:
            state.settle(est, cost)
        # the requested model name is stored (servers may report a resolved snapshot)
        answer = Answer(cache_key=ck, attempt=attempt, record_key=record.key, model=self.opts.model,
                        prompt_version=self.prompt.version, content=content, input_tokens=n_in,
                        output_tokens=n_out, cost_usd=cost, mode="sync", created_at=time.time())
        # durable before the caption built from it, within a millisecond or two: a kill after the
        # commit never re-sends it
        if self.writer is not None:
            self.writer.answer(answer)
        else:
            self.cache.put(answer)
        self.c["requests"] += 1
        self.c["input_tokens"] += n_in
        self.c["output_tokens"] += n_out
        return answer

    async def worker(self, queue: asyncio.Queue) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            if self.state.halted:
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
        self.writer = CatalogWriter(self.catalog.path, on_error=self.state.fail)
        on_sigint = self._stop_on_sigint()
        try:
            for record in iter_candidates(self.catalog, self.opts.source, self.opts.where, partition=self.partition):
                if self.state.halted:
                    break
                prepared = self.prepare(record)
                if prepared is None:
                    continue
                if not self.state.take():  # --limit reached; not a stop: what is queued still runs
                    break
                await queue.put((record, *prepared))
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers, return_exceptions=True)
            self.flush()
            self.writer.close()
            self.writer = None
            if on_sigint:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
            for client in self.clients:
                await client.close()

    def _stop_on_sigint(self) -> bool:
        """First Ctrl-C: a clean stop (nothing new is sent, answers in flight are kept, the summary
        is printed); a second one interrupts. Only where Python's own handler is in place (not in
        the --processes children, which ignore SIGINT and follow the parent's stop)."""
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
            return False
        loop = asyncio.get_running_loop()

        def stop() -> None:
            self.state.stop("interrupted")
            loop.remove_signal_handler(signal.SIGINT)  # the next Ctrl-C raises KeyboardInterrupt
            log.warning("interrupted: finishing the requests in flight (Ctrl-C again to abort)")

        try:
            loop.add_signal_handler(signal.SIGINT, stop)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            return False
        return True

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



def completion_parts(resp: Any) -> tuple[str | None, dict]:
    """(message content, usage) of a chat-completion answer parsed as JSON."""
    if not isinstance(resp, dict):
        raise RecordError(f"unexpected answer of type {type(resp).__name__}")
    choices = resp.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    usage = resp.get("usage")
    return (content if isinstance(content, str) else None), (usage if isinstance(usage, dict) else {})

