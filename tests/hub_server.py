"""A fake Hugging Face Hub on 127.0.0.1 for upload tests (stdlib ThreadingHTTPServer).

It implements only the calls `imdd-build push-to-hub` makes through huggingface_hub 2.4 with the
plain-LFS transfer (hf_xet disabled):

    GET  /api/whoami-v2                                     whoami (the token's user is `user`)
    POST /api/repos/create                                  create_repo (409 when it exists)
    POST /api/datasets/{repo}/branch/{branch}               create_branch
    PUT  /api/datasets/{repo}/settings                      update_repo_settings (gated)
    GET  /api/datasets/{repo}/tree/{rev}?recursive=true     list_repo_tree (files only, one page)
    POST /api/datasets/{repo}/preupload/{rev}               upload modes (+ remote oid)
    POST /api/validate-yaml                                 README metadata check (yaml.safe_load)
    POST /datasets/{repo}.git/info/lfs/objects/batch        LFS batch: no actions for stored objects
    PUT  /lfs/{oid}                                         LFS basic upload (sha256 checked)
    POST /api/datasets/{repo}/commit/{rev}                  ndjson commit (file, lfsFile, deletedFile)

Every /api and batch call must carry `Authorization: Bearer <token>` (else 401). Faults are
injected with `fail(method, path_regex, status, times, retry_after=None, after=0)`: after `after`
matching requests were served, the next `times` ones get `status` instead. Everything the server saw is in
`requests` (method, path, authorization header) and the repo state in `repos`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class Repo:
    private: bool
    gated: object = False
    branches: dict = field(default_factory=lambda: {"main": {}})  # branch -> path -> file entry
    commits: list = field(default_factory=list)  # (branch, summary, [paths added], [paths deleted])


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    times: int
    retry_after: str | None = None
    after: int = 0  # let this many matching requests through first


class FakeHub:
    def __init__(self, token: str, user: str = "me"):
        self.token, self.user = token, user
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str, str | None]] = []
        self.lfs_puts: list[str] = []  # oids received through PUT
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, path_regex: str, status: int, times: int = 1, retry_after: str | None = None,
             after: int = 0):
        self.faults.append(Fault(method, re.compile(path_regex), status, times, retry_after, after))

    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        """path -> content of the files on a branch."""
        out = {}
        for path, entry in self.repos[repo_id].branches[branch].items():
            out[path] = self.lfs[entry["lfs"]["oid"]] if entry.get("lfs") else entry["content"]
        return out

    # -- request handling ------------------------------------------------------------------
    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload=None, headers: dict | None = None) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _dispatch(self, method: str) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                body = self._body()
                auth = self.headers.get("Authorization")
                with hub.lock:
                    hub.requests.append((method, path, auth))
                    for fault in hub.faults:
                        if fault.times > 0 and fault.method == method and fault.pattern.search(path):
                            if fault.after > 0:
                                fault.after -= 1
                                continue
                            fault.times -= 1
                            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                            return self._send(fault.status, {"error": f"injected {fault.status}"}, headers)
                if not path.startswith("/lfs/") and auth != f"Bearer {hub.token}":
                    return self._send(401, {"error": "Invalid credentials"})
                try:
                    with hub.lock:
                        status, payload = hub.route(method, path, parse_qs(url.query), body, self)
                except KeyError as exc:
                    status, payload = 404, {"error": f"not found: {exc}"}
                self._send(status, payload)

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):
                self._dispatch("PUT")

        return Handler

    def route(self, method: str, path: str, query: dict, body: bytes, handler) -> tuple[int, object]:
        m = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(tree|preupload|commit|branch)/(.+?)(/.*)?", path)
        if method == "GET" and path == "/api/whoami-v2":
            return 200, {"type": "user", "name": self.user, "orgs": []}
        if method == "POST" and path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if req.get("type") != "dataset":
                return 400, {"error": "this fake hub only hosts datasets"}
            if repo_id in self.repos:
                return 409, {"error": "You already created this dataset repo", "url": f"{self.url}/datasets/{repo_id}"}
            self.repos[repo_id] = Repo(private=req.get("visibility") == "private" or bool(req.get("private")))
            return 200, {"url": f"{self.url}/datasets/{repo_id}", "name": repo_id}
        if method == "POST" and path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            try:
                yaml.safe_load(content.split("---", 2)[1])
            except Exception as exc:  # noqa: BLE001
                return 400, {"errors": [{"message": str(exc)}]}
            return 200, {"errors": [], "warnings": []}
        s = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/settings", path)
        if method == "PUT" and s:
            self.repos[s.group(1)].gated = json.loads(body).get("gated")
            return 200, {}
        lfs = re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and lfs:
            self.repos[lfs.group(1)]  # noqa: B018  (404 when missing)
            req = json.loads(body)
            objects = []
            for obj in req["objects"]:
                entry = {"oid": obj["oid"], "size": obj["size"]}
                if obj["oid"] not in self.lfs:  # stored objects get no actions: nothing to send
                    entry["actions"] = {"upload": {"href": f"{self.url}/lfs/{obj['oid']}"}}
                objects.append(entry)
            return 200, {"transfer": "basic", "objects": objects}
        up = re.fullmatch(r"/lfs/([0-9a-f]{64})", path)
        if method == "PUT" and up:
            if hashlib.sha256(body).hexdigest() != up.group(1):
                return 400, {"error": "sha256 mismatch"}
            self.lfs[up.group(1)] = body
            self.lfs_puts.append(up.group(1))
            return 200, {}
        if not m:
            return 404, {"error": f"no route for {method} {path}"}
        repo_id, action, rev, rest = m.groups()
        repo = self.repos[repo_id]
        if action == "branch" and method == "POST":
            if rev in repo.branches:
                return 409, {"error": "branch exists"}
            repo.branches[rev] = dict(repo.branches["main"])
            return 200, {}
        files = repo.branches[rev]
        if action == "tree" and method == "GET":
            prefix = (rest or "").strip("/")
            items = [{"type": "file", "path": p, "size": e["size"], "oid": e["oid"],
                      **({"lfs": e["lfs"]} if e.get("lfs") else {})}
                     for p, e in sorted(files.items()) if p.startswith(prefix)]
            return 200, items
        if action == "preupload" and method == "POST":
            out = []
            for f in json.loads(body)["files"]:
                regular = f["path"].endswith((".md", ".json")) or f["size"] == 0
                remote = files.get(f["path"])
                oid = None if remote is None else (remote["lfs"]["oid"] if remote.get("lfs") else remote["oid"])
                out.append({"path": f["path"], "uploadMode": "regular" if regular else "lfs",
                            "shouldIgnore": False, "oid": oid})
            return 200, {"files": out}
        if action == "commit" and method == "POST":
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            header = lines[0]["value"]
            added, deleted = [], []
            staged = dict(files)
            for item in lines[1:]:
                v = item["value"]
                if item["key"] == "file":
                    data = base64.b64decode(v["content"])
                    staged[v["path"]] = {"size": len(data), "oid": git_blob_id(data), "content": data}
                    added.append(v["path"])
                elif item["key"] == "lfsFile":
                    if v["oid"] not in self.lfs:
                        return 422, {"error": f"LFS object {v['oid']} was never uploaded"}
                    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{v['oid']}\nsize {v['size']}\n"
                    staged[v["path"]] = {"size": v["size"], "oid": git_blob_id(pointer.encode()),
                                         "lfs": {"oid": v["oid"], "size": v["size"], "pointerSize": len(pointer)}}
                    added.append(v["path"])
                elif item["key"] == "deletedFile":
                    if v["path"] not in staged:
                        return 404, {"error": "A file with this name doesn't exist"}
                    del staged[v["path"]]
                    deleted.append(v["path"])
                else:
                    return 400, {"error": f"unsupported commit item {item['key']}"}
            repo.branches[rev] = staged
            repo.commits.append((rev, header["summary"], added, deleted))
            oid = hashlib.sha1(f"{repo_id}{len(repo.commits)}".encode()).hexdigest()
            return 200, {"commitUrl": f"{self.url}/datasets/{repo_id}/commit/{oid}", "commitOid": oid,
                         "success": True}
        return 404, {"error": f"no route for {method} {path}"}
