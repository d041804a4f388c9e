"""A fake OpenAI-compatible server for the tests and the benchmark (stdlib asyncio, HTTP/1.1 keep-alive).

Implements POST /v1/chat/completions, POST /v1/files (multipart), GET /v1/files/{id}/content,
POST /v1/batches and GET /v1/batches/{id}. The "model" answers with the request's template caption
and the facts it was given (a caption that passes the checks), unless a fault is scheduled:

    ok | 429[:retry_after] | 500 | timeout:<seconds> | malformed | schema | badcaption | refuse_schema

Faults are scheduled per record (the X-Imdd-Record header) as a list consumed one per request, or
by `fault_fn(record_key, facts, attempt) -> action`. Every request is logged (never its headers).

Run standalone for the benchmark: `python tests/llm_server.py --latency 0.25` prints the port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any


def _facts(body: dict) -> dict:
    for m in body.get("messages") or []:
        if m.get("role") != "user":
            continue
        content = m.get("content")
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
        if "Facts:" in text:
            raw = text.split("Facts:", 1)[1].strip()
            end = raw.rfind("}")
            try:
                return json.loads(raw[: end + 1])
            except json.JSONDecodeError:
                return {}
    return {}


def _good_answer(facts: dict) -> dict:
    types = [t["name"] for t in facts.get("defect_types") or []] if facts.get("label") == "defective" else []
    return {"caption": facts.get("template_caption", ""), "defect_terms": types,
            "location": facts.get("location"), "severity": facts.get("severity")}


def answer_content(action: str, facts: dict) -> str:
    if action == "malformed":
        return '{"caption": "A close-up inspection image of a metal plate showing'  # cut off
    if action == "schema":
        return json.dumps({"text": facts.get("template_caption", ""), "defect_terms": "scratch"})
    if action == "badcaption":
        bad = {"caption": "**Defect**: something in the lower left.", "defect_terms": ["rust"],
               "location": "lower left", "severity": "severe"}
        if facts.get("label") == "normal":
            bad["caption"] = "A close-up image of a plate showing a large crack defect across the surface."
        return json.dumps(bad)
    return json.dumps(_good_answer(facts))


class FakeOpenAI:
    def __init__(self, latency: float = 0.0, api_key: str | None = None, jitter: float = 0.0):
        self.latency = latency
        self.jitter = jitter  # latency is uniform in latency * [1 - jitter, 1 + jitter]
        self.api_key = api_key
        self.faults: dict[str, list[str]] = {}
        self.fault_fn: Callable[[str | None, dict, int], str] | None = None
        self.reject_json_schema = False
        self.batch_status_after = 1  # retrieves before a batch completes
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.counter = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0
        self.served = 0

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        fut.result(10)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", self.port, backlog=2048, limit=1 << 24)
        self.port = self.server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self.loop is None:
            return

        async def _close():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def chat_log(self) -> list[dict]:
        with self.lock:
            return [e for e in self.log if e["path"] == "/v1/chat/completions"]

    # -- http -----------------------------------------------------------------------------------
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                entry: dict[str, Any] = {}
                status, payload, extra, ctype = await self._handle(method, path.split("?")[0], headers, body, entry)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                head_out = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'ERR'}", f"Content-Type: {ctype}",
                            f"Content-Length: {len(data)}", "Connection: keep-alive"]
                head_out += [f"{k}: {v}" for k, v in extra.items()]
                try:
                    writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode() + data)
                    await writer.drain()
                    entry["sent_at"] = time.monotonic()
                except (ConnectionError, RuntimeError):
                    return
                if headers.get("connection", "").lower() == "close":
                    return
        except Exception:  # noqa: BLE001 - a broken test connection must not kill the server
            return
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def _next_id(self, prefix: str) -> str:
        with self.lock:
            self.counter += 1
            return f"{prefix}-{self.counter}"

    async def _handle(self, method: str, path: str, headers: dict, body: bytes, entry: dict):
        entry.update({"t": time.monotonic(), "method": method, "path": path,
                                 "record": headers.get("x-imdd-record"), "request": headers.get("x-imdd-request"),
                                 "auth_ok": self.api_key is None
                                 or headers.get("authorization") == f"Bearer {self.api_key}"})
        with self.lock:
            self.log.append(entry)
        if not entry["auth_ok"]:
            entry["status"] = 401
            return 401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "code": "invalid_api_key"}}, {}, "application/json"
        if method == "POST" and path == "/v1/chat/completions":
            return await self._chat(json.loads(body), entry)
        if method == "POST" and path == "/v1/files":
            return self._upload(headers, body)
        m = re.fullmatch(r"/v1/files/([^/]+)/content", path)
        if method == "GET" and m:
            return 200, self.files.get(m.group(1), b""), {}, "application/octet-stream"
        if method == "POST" and path == "/v1/batches":
            return self._create_batch(json.loads(body))
        m = re.fullmatch(r"/v1/batches/([^/]+)", path)
        if method == "GET" and m and m.group(1) in self.batches:
            return 200, self._retrieve_batch(m.group(1)), {}, "application/json"
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}, {}, "application/json"

    def _action(self, record: str | None, facts: dict, attempt: int) -> str:
        if self.fault_fn is not None:
            return self.fault_fn(record, facts, attempt) or "ok"
        with self.lock:
            queue = self.faults.get(record or "")
            return queue.pop(0) if queue else "ok"

    async def _chat(self, req: dict, entry: dict):
        facts = _facts(req)
        attempt = 2 if len(req.get("messages") or []) > 2 else 1
        action = self._action(entry["record"], facts, attempt)
        entry.update(action=action, attempt=attempt,
                     retry_reasons=json.dumps(req["messages"][-1]["content"]) if attempt == 2 else None)
        if self.latency:
            await asyncio.sleep(self.latency * (1 + self.jitter * (2 * random.random() - 1)))
        if action.startswith("timeout"):
            await asyncio.sleep(float(action.split(":")[1]) if ":" in action else 5.0)
            entry["status"] = 200
            return 200, self._completion(req, answer_content("ok", facts)), {}, "application/json"
        if action.startswith("429"):
            after = action.split(":")[1] if ":" in action else "0.05"
            entry["status"] = 429
            return 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": after}, \
                "application/json"
        if action == "500":
            entry["status"] = 500
            return 500, {"error": {"message": "boom", "type": "server_error"}}, {}, "application/json"
        rf = (req.get("response_format") or {}).get("type")
        if (self.reject_json_schema or action == "refuse_schema") and rf == "json_schema":
            entry["status"] = 400
            return 400, {"error": {"message": "response_format json_schema is not supported by this server",
                                   "type": "invalid_request_error"}}, {}, "application/json"
        entry["status"] = 200
        entry["answered"] = True
        entry["response_format"] = rf
        with self.lock:
            self.served += 1
        return 200, self._completion(req, answer_content(action, facts)), {}, "application/json"

    def _completion(self, req: dict, content: str) -> dict:
        prompt_tokens = len(json.dumps(req.get("messages"))) // 4
        return {"id": self._next_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model"), "choices": [{"index": 0, "finish_reason": "stop",
                                                        "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                          "total_tokens": prompt_tokens + len(content) // 4}}

    # -- files and batches ----------------------------------------------------------------------
    def _upload(self, headers: dict, body: bytes):
        boundary = re.search(r"boundary=\"?([^\";]+)", headers.get("content-type", "")).group(1).encode()
        fields: dict[str, bytes] = {}
        filename = "upload.jsonl"
        for part in body.split(b"--" + boundary):
            if b"\r\n\r\n" not in part:
                continue
            phead, pdata = part.split(b"\r\n\r\n", 1)
            name = re.search(rb'name="([^"]+)"', phead)
            fn = re.search(rb'filename="([^"]*)"', phead)
            if fn:
                filename = fn.group(1).decode()
            if name:
                fields[name.group(1).decode()] = pdata[:-2] if pdata.endswith(b"\r\n") else pdata
        fid = self._next_id("file")
        self.files[fid] = fields.get("file", b"")
        return 200, {"id": fid, "object": "file", "bytes": len(self.files[fid]), "created_at": int(time.time()),
                     "filename": filename, "purpose": fields.get("purpose", b"").decode(), "status": "processed"}, \
            {}, "application/json"

    def _create_batch(self, req: dict):
        bid = self._next_id("batch")
        self.batches[bid] = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                             "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                             "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                             "error_file_id": None, "metadata": req.get("metadata"), "_polls": 0,
                             "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        return 200, self._public(self.batches[bid]), {}, "application/json"

    def _public(self, batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _retrieve_batch(self, bid: str) -> dict:
        batch = self.batches[bid]
        batch["_polls"] += 1
        if batch["status"] != "completed" and batch["_polls"] > self.batch_status_after:
            outputs, errors = [], []
            for line in self.files[batch["input_file_id"]].decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                facts = _facts(item["body"])
                attempt = 2 if len(item["body"]["messages"]) > 2 else 1
                action = self._action(None, facts, attempt)
                with self.lock:
                    self.log.append({"t": time.monotonic(), "method": "BATCH", "path": "batch-line",
                                     "custom_id": item["custom_id"], "action": action})
                if action == "500":
                    errors.append({"id": self._next_id("req"), "custom_id": item["custom_id"],
                                   "response": {"status_code": 500, "body": {"error": {"message": "boom"}}},
                                   "error": None})
                    continue
                outputs.append({"id": self._next_id("req"), "custom_id": item["custom_id"], "error": None,
                                "response": {"status_code": 200, "request_id": "r",
                                             "body": self._completion(item["body"], answer_content(action, facts))}})
            out_id = self._next_id("file")
            self.files[out_id] = "".join(json.dumps(o) + "\n" for o in outputs).encode()
            batch["output_file_id"] = out_id
            if errors:
                err_id = self._next_id("file")
                self.files[err_id] = "".join(json.dumps(o) + "\n" for o in errors).encode()
                batch["error_file_id"] = err_id
            batch["status"] = "completed"
            batch["request_counts"] = {"total": len(outputs) + len(errors), "completed": len(outputs),
                                       "failed": len(errors)}
        elif batch["status"] == "validating":
            batch["status"] = "in_progress"
        return self._public(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--jitter", type=float, default=0.0)
    args = ap.parse_args()
    server = FakeOpenAI(latency=args.latency, jitter=args.jitter).start()
    print(server.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
