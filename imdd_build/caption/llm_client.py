"""The HTTP layer of `caption --llm`: run options, the openai client, request bodies and retries.

`LLMOptions` says what a run asks the server and how; `make_client(s)` builds the official openai
client (key from OPENAI_API_KEY only, never stored or logged); `classify` decides what an error means;
how long to wait before trying again comes from `imdd_build.retry` (`retry_after_seconds`, `backoff`).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .. import retry
from ..errors import RunError
from ..retry import backoff, retry_after_seconds  # noqa: F401  (the one parser; re-exported)
from .prompt import response_format

DEFAULT_MODEL = "gpt-4o-mini"


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
    transport: str = "auto"  # auto (aiohttp when installed), aiohttp or httpx
    processes: int = 1  # client processes sharing the run (0: one per 64 in flight, at most one per core)
    max_cost: float | None = None
    limit: int | None = None
    where: str | None = None
    source: str | None = None
    timeout: float = 120.0
    max_retries: int = 6
    backoff_base: float = field(default_factory=lambda: retry.LLM_BACKOFF.base)
    backoff_max: float = field(default_factory=lambda: retry.LLM_BACKOFF.cap)
    max_tokens: int = 400
    temperature: float | None = None
    response_format: str = "json_schema"  # falls back to json_object, then none, if the server refuses it
    dry_run: bool = False
    flush_every: int = 200

    def request_options(self) -> dict:
        """What changes the answer (part of the cache key): not concurrency, timeouts or budgets."""
        return {"vision": self.vision, "detail": self.image_detail if self.vision else None,
                "max_tokens": self.max_tokens, "temperature": self.temperature}


def request_body(options: LLMOptions, messages: list[dict], fmt: str) -> dict:
    """The chat-completion request body (the synchronous run and the Batch API send the same)."""
    body: dict[str, Any] = {"model": options.model, "messages": messages, "max_tokens": options.max_tokens}
    rf = response_format(fmt)
    if rf is not None:
        body["response_format"] = rf
    if options.temperature is not None:
        body["temperature"] = options.temperature
    return body


CONNECTIONS_PER_CLIENT = 32


def transport_name(options: LLMOptions) -> str:
    """The HTTP transport under the openai client: `aiohttp` (the SDK's `DefaultAioHttpClient`,
    about half the client CPU per request) when installed, else the SDK's default httpx."""
    if options.transport not in ("auto", "aiohttp", "httpx"):
        raise RunError(f"invalid --transport {options.transport!r} (auto, aiohttp or httpx)")
    if options.transport != "auto":
        return options.transport
    import openai

    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    return "aiohttp" if has_aiohttp and hasattr(openai, "DefaultAioHttpClient") else "httpx"


def make_clients(options: LLMOptions) -> list:
    """Async clients sharing the concurrency. One aiohttp-backed client; with httpx, clients of at
    most 32 connections each: httpcore's pool does work linear in its size on every request, so one
    pool of 256 connections costs the client CPU."""
    if transport_name(options) == "aiohttp":
        return [make_client(options)]
    n = max(1, -(-options.concurrency // CONNECTIONS_PER_CLIENT))
    per = -(-options.concurrency // n)
    return [make_client(options, connections=per) for _ in range(n)]


def make_client(options: LLMOptions, async_client: bool = True, connections: int | None = None):
    """The official openai client; key from OPENAI_API_KEY (a local --base-url may run without)."""
    try:
        import openai
    except ImportError:
        raise RunError("caption --llm needs the openai package: pip install -e '.[llm]'") from None
    key = os.environ.get("OPENAI_API_KEY")
    base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or None
    if not key:
        if not base_url:
            raise RunError("OPENAI_API_KEY is not set (a local server without keys: pass --base-url)")
        key = "EMPTY"  # vLLM, Ollama and llama.cpp servers accept any key unless started with one
    try:
        import httpx2 as httpx  # the transport of openai >= 3
    except ImportError:  # pragma: no cover
        import httpx
    conns = max(connections or options.concurrency, 1)
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    if async_client:
        if transport_name(options) == "aiohttp":
            try:
                http = openai.DefaultAioHttpClient(limits=limits, timeout=options.timeout)
            except RuntimeError:
                raise RunError("--transport aiohttp needs the SDK's aiohttp extra: pip install 'openai[aiohttp]'") from None
        else:
            http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=options.timeout)
        return openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=options.timeout,
                                  http_client=http)
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


def connection_failure(exc: BaseException) -> str | None:
    """'cannot connect to URL (cause)' when the request never reached the server, else None.

    The SDK reports a refused or unresolvable connection as `APIConnectionError`, or as
    `APITimeoutError` under the aiohttp transport (which maps the connector error to a connect
    timeout); the cause chain tells them apart from a server that accepted and then timed out."""
    import openai

    if not isinstance(exc, openai.APIConnectionError):
        return None
    link: BaseException | None = exc
    connect, reason = False, None
    for _ in range(12):
        link = link.__cause__ or link.__context__ if link is not None else None
        if link is None:
            break
        name = type(link).__name__
        connect = connect or name.startswith("Connect") or name == "ClientConnectorError"
        if isinstance(link, OSError) and not isinstance(link, TimeoutError):
            connect, reason = True, f"{type(link).__name__}: {link}"
    if not connect:
        return None
    request = getattr(exc, "request", None)
    url = str(request.url) if request is not None else "the server"
    return f"connection failed: cannot connect to {url}" + (f" ({reason})" if reason else "")


def short_error(exc: BaseException) -> str:
    refused = connection_failure(exc)
    if refused:
        return refused
    status = getattr(exc, "status_code", None)
    text = re.sub(r"\s+", " ", str(exc))[:200]
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"
