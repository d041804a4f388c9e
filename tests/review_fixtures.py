"""Shared helpers of the review tests: a captioned demo workspace, reviewers, a real server process."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import httpx
import pytest
from conftest import Cli

from imdd_build.catalog import Catalog
from imdd_build.review.queue import ReviewQueue
from imdd_build.sources.demo import generate_demo

BROKEN_KEY = "demo/metal_plate/test/scratch/000"
BROKEN_CAPTION = "Nice picture of a plate."
_TEMPLATES: dict[int, Path] = {}


def _template(clones: int) -> Path:
    """A captioned demo workspace (built once per test process and size), with one caption that fails checks."""
    if clones in _TEMPLATES:
        return _TEMPLATES[clones]
    base = Path(tempfile.mkdtemp(prefix="imdd-review-"))
    atexit.register(shutil.rmtree, base, True)
    ws = base / "ws"
    cli = Cli(ws)
    cli("ingest", "demo", "--root", str(generate_demo(base / "src")), "--workers", "1")
    cli("caption")
    with Catalog(ws / "catalog.sqlite") as catalog:
        broken = catalog.get(BROKEN_KEY)
        catalog.set_captions([broken.model_copy(update={"caption": BROKEN_CAPTION, "caption_meta": {}})])
        if clones:
            originals = list(catalog.iter_records())
            items = []
            for i in range(clones):
                rec = originals[i % len(originals)]
                key = f"demo/clone/{i:05d}/" + rec.key.split("/", 1)[1]
                items.append((rec.model_copy(update={"key": key, "source_path": f"clone/{i}/{rec.source_path}"}),
                               "clone"))
            catalog.upsert(items)
    _TEMPLATES[clones] = ws
    return ws


def review_workspace(dest: Path, clones: int = 0) -> Path:
    """A private copy of the template workspace under `dest`."""
    ws = Path(dest) / "ws"
    shutil.copytree(_template(clones), ws)
    return ws


def add_reviewer(ws: Path, name: str, admin: bool = False) -> str:
    args = ["review", "add-reviewer", name] + (["--admin"] if admin else [])
    return Cli(ws)(*args)["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReviewServer:
    """`imdd-build review serve` in a child process on a free loopback port."""

    def __init__(self, ws: Path, lease_minutes: float = 15.0, extra: Optional[list[str]] = None):
        self.ws = Path(ws)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.ws.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", "imdd_build", "--workspace", str(self.ws), "review", "serve",
               "--port", str(self.port), "--lease-minutes", str(lease_minutes), *(extra or [])]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(f"server did not start: {self.log.read_text()}")
            time.sleep(0.1)

    def client(self, token: Optional[str] = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def raw_get(port: int, path: str, token: Optional[str]) -> tuple[int, bytes]:
    """A GET whose path goes on the wire exactly as given (no client-side dot-segment normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        s.sendall((head + "\r\n").encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


def raw_request(port: int, method: str, path: str, headers: Optional[dict] = None, body: bytes = b"",
                timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One request written by hand (headers may promise more body than is sent); (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), fields, rest


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(rest) >= int(value)
    return False


def login(server: ReviewServer, token: str) -> tuple[httpx.Client, str]:
    """A browser-like client logged in with the form: (client holding the session cookie, the page's CSRF token)."""
    c = server.client()
    form = c.get("/login")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    assert c.post("/login", data={"token": token, "csrf": csrf}).status_code == 303
    page = c.get("/")
    return c, page.text.split('name="csrf-token" content="')[1].split('"')[0]


class Clock:
    """A settable clock for the queue (lease expiry without sleeping)."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def q(tmp_path):
    """A review queue on a fresh demo workspace, 60 s leases, on a `Clock` (`q.clock.now += ...`)."""
    ws = review_workspace(tmp_path)
    catalog = Catalog(ws / "catalog.sqlite")
    queue = ReviewQueue(catalog, lease_seconds=60, clock=Clock())
    yield queue
    catalog.close()


@contextmanager
def served_queue(dest: Path) -> Iterator[dict]:
    """A review workspace with a 10% sample queued (single review), admin `alice` and reviewer `bob`,
    served on 127.0.0.1: {"ws", "server", "tokens", "port"}."""
    ws = review_workspace(dest)
    Cli(ws)("review", "enqueue", "--sample-rate", "0.1", "--double-rate", "0")
    tokens = {"alice": add_reviewer(ws, "alice", admin=True), "bob": add_reviewer(ws, "bob")}
    with ReviewServer(ws) as server:
        yield {"ws": ws, "server": server, "tokens": tokens, "port": server.port}
