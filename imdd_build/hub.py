"""Upload a prepared repository folder to the Hugging Face Hub, resumably, README last.

Built on `huggingface_hub` (imported lazily; the `publish` extra) primitives rather than one
`upload_folder` call, because we need three things it does not give on every install:

1. **Resume by listing, not by re-sending.** The remote tree is listed first (`list_repo_tree`);
   a file whose LFS sha256 (or git blob id) matches the local file is already committed and is not
   sent again. Re-running after an interruption only uploads what is missing.
2. **Batched commits, README last.** Data files go in commits of at most `batch_files` files /
   `batch_bytes` bytes (the Hub limits commits per hour, so never one commit per file); the card
   (`README.md`) and the deletion of stale files from a previous layout are the final commit, so
   the repo never advertises configs whose files are not there yet.
3. **Retries with backoff** (`retry.HUB_BACKOFF`) on 429 and 5xx (and connection errors) around every
   API call and commit, honouring `Retry-After`. Requests huggingface_hub already retries itself (its
   `http_backoff`: preupload, LFS transfers, paginated tree listings) are not retried again on top. After
   a failed commit the remote tree is listed again before retrying, so a commit that landed but whose
   response was lost is not committed twice.

File content goes through `HfApi.create_commit`, which (like `upload_folder`) uploads through Xet
when `hf_xet` is installed and through plain LFS (`/info/lfs/objects/batch` + PUT) otherwise or
with `HF_HUB_DISABLE_XET=1`. The token comes from `HF_TOKEN` or the cached login and is never
printed or written anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import retry
from .errors import RunError
from .store import sha256_file

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
LAST = "README.md"
MANAGED_DIRS = ("data/", "webdataset/", "assets/", "metadata/")  # stale files here are deleted
# Requests huggingface_hub sends through its own `http_backoff` (429/5xx/connection errors): an error from one
# of them was retried there already, so it is not retried again here.
HUB_RETRIED = re.compile(r"/api/[a-z]+s/[^/]+/[^/]+/(preupload|tree)/|\.git/info/lfs/")


class HubError(RuntimeError):
    """An upload that failed after every retry (message names the step, never the token)."""


def resolve_token() -> str:
    """HF_TOKEN, else the cached `hf auth login` token; a clear error when there is none."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise RunError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (needs write access)")
    return token


def user_namespace(token: str, endpoint: str | None = None) -> str:
    """The user name the token belongs to (where a repository without `owner/` goes)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        return api.whoami()["name"]
    except Exception as exc:  # noqa: BLE001  (network or auth: one clear line, never the token)
        raise RunError(f"cannot find your Hugging Face user name to put the repository under "
                         f"({type(exc).__name__}); give the repository as OWNER/NAME") from None


def git_blob_id(path: Path) -> str:
    """The git object id of a file (what the Hub lists as `oid` for non-LFS files)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class LocalFile:
    path: str  # in the repo, posix
    abspath: Path
    size: int
    sha256: str
    blob_id: str

    def matches(self, remote: dict | None) -> bool:
        if remote is None or remote["size"] != self.size:
            return False
        return remote["sha256"] == self.sha256 if remote.get("sha256") else remote["oid"] == self.blob_id


def local_files(folder: Path) -> list[LocalFile]:
    """Every file to upload (hidden files and folders left out), data first, README.md last."""
    folder = Path(folder)
    files = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or any(part.startswith(".") for part in rel.split("/")):
            continue
        files.append(LocalFile(rel, p, p.stat().st_size, sha256_file(p), git_blob_id(p)))

    def rank(f: LocalFile) -> tuple:
        return (f.path == LAST, not f.path.startswith(("data/", "webdataset/")), f.path)
    return sorted(files, key=rank)


@dataclass
class UploadReport:
    repo_id: str
    revision: str
    url: str = ""
    files: int = 0
    uploaded: list[str] = field(default_factory=list)
    skipped: int = 0  # already on the Hub with the same content
    deleted: list[str] = field(default_factory=list)
    commits: int = 0
    retries: int = 0
    bytes_uploaded: int = 0
    gated: str | None = None

    def as_dict(self) -> dict:
        return {"repo_id": self.repo_id, "revision": self.revision, "url": self.url, "files": self.files,
                "uploaded": len(self.uploaded), "skipped_unchanged": self.skipped, "deleted": self.deleted,
                "commits": self.commits, "retries": self.retries, "bytes_uploaded": self.bytes_uploaded,
                "gated": self.gated}


def _request_url(exc: BaseException) -> str:
    """The URL of the request that failed ('' when the error carries none)."""
    for holder in (getattr(exc, "response", None), exc):
        try:
            request = getattr(holder, "request", None)
        except RuntimeError:  # httpx: no request attached
            request = None
        if request is not None:
            return str(request.url)
    return ""


class Uploader:
    def __init__(self, repo_id: str, token: str, *, endpoint: str | None = None, revision: str | None = None,
                 backoff: retry.Backoff | None = None,
                 batch_files: int = 100, batch_bytes: int = 5_000_000_000,
                 on_progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None):
        from huggingface_hub import HfApi

        self.api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
        self.repo_id = repo_id
        self.revision = revision or "main"
        self.backoff = backoff or retry.HUB_BACKOFF
        self.max_retries = self.backoff.max_retries
        self.batch_files, self.batch_bytes = batch_files, batch_bytes
        self.on_progress = on_progress or (lambda done, total: None)
        self.log = log or (lambda message: None)
        self.report = UploadReport(repo_id, self.revision)

    # -- retries ---------------------------------------------------------------------------
    def _retryable(self, exc: BaseException) -> bool:
        from huggingface_hub.errors import HfHubHTTPError

        if HUB_RETRIED.search(_request_url(exc)):
            return False
        if isinstance(exc, HfHubHTTPError):
            response = getattr(exc, "response", None)
            return response is not None and response.status_code in RETRY_STATUSES
        return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore") or isinstance(
            exc, (ConnectionError, TimeoutError))

    def _wait(self, exc: BaseException, attempt: int) -> float:
        response = getattr(exc, "response", None)
        after = retry.retry_after_seconds(response.headers if response is not None else None)
        return min(after, self.backoff.cap) if after is not None else self.backoff.delay(attempt)

    def call(self, what: str, fn: Callable, *args, before_retry: Callable[[], None] | None = None, **kwargs):
        """fn(*args, **kwargs) with exponential backoff on 429/5xx/connection errors."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not self._retryable(exc) or attempt == self.max_retries:
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    raise HubError(f"{what} failed{f' (HTTP {status})' if status else ''}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
                wait = self._wait(exc, attempt)
                self.report.retries += 1
                self.log(f"{what}: {type(exc).__name__}, retry {attempt + 1}/{self.max_retries} in {wait:.1f}s")
                time.sleep(wait)
                if before_retry:
                    before_retry()

    # -- remote state ----------------------------------------------------------------------
    def remote_files(self) -> dict[str, dict]:
        from huggingface_hub.hf_api import RepoFile

        def listing():
            out = {}
            for item in self.api.list_repo_tree(self.repo_id, repo_type="dataset", revision=self.revision,
                                                recursive=True):
                if isinstance(item, RepoFile):
                    out[item.path] = {"size": item.size, "oid": item.blob_id,
                                      "sha256": item.lfs.sha256 if item.lfs else None}
            return out
        return self.call("list the repository files", listing)

    # -- the flow --------------------------------------------------------------------------
    def push(self, folder: Path, *, private: bool, gated: bool, commit_message: str) -> UploadReport:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        url = self.call("create the repository", self.api.create_repo, self.repo_id, repo_type="dataset",
                        private=private, exist_ok=True)
        self.report.url = str(url)
        if self.revision != "main":
            self.call(f"create branch {self.revision}", self.api.create_branch, self.repo_id, repo_type="dataset",
                      branch=self.revision, exist_ok=True)
        if gated:  # before any data lands, so nothing is ever downloadable without accepting the terms
            self.call("enable gated access", self.api.update_repo_settings, self.repo_id, repo_type="dataset",
                      gated="auto")
            self.report.gated = "auto"
        files = local_files(folder)
        self.report.files = len(files)
        remote = self.remote_files()
        pending = [f for f in files if f.path != LAST and not f.matches(remote.get(f.path))]
        self.report.skipped = sum(1 for f in files if f.matches(remote.get(f.path)))
        total = len(pending) + 1
        batches: list[list[LocalFile]] = []
        for f in pending:
            if not batches or len(batches[-1]) >= self.batch_files or \
                    sum(x.size for x in batches[-1]) + f.size > self.batch_bytes:
                batches.append([])
            batches[-1].append(f)
        done = 0
        for index, batch in enumerate(batches, 1):
            state = {"todo": batch}

            def refresh(batch=batch, state=state):  # a commit may have landed before the error
                now = self.remote_files()
                state["todo"] = [f for f in batch if not f.matches(now.get(f.path))]

            def commit(state=state, index=index):
                if not state["todo"]:
                    return None
                ops = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.abspath)) for f in state["todo"]]
                return self.api.create_commit(self.repo_id, ops, repo_type="dataset", revision=self.revision,
                                              commit_message=f"{commit_message}: data ({index}/{len(batches)})")
            if self.call(f"commit batch {index}/{len(batches)}", commit, before_retry=refresh) is not None:
                self.report.commits += 1
            self.report.uploaded += [f.path for f in state["todo"]]
            self.report.bytes_uploaded += sum(f.size for f in state["todo"])
            done += len(batch)
            self.on_progress(done, total)
        # Final commit: the card, and the removal of files a previous push left that this layout has not.
        local = {f.path for f in files}
        readme = next((f for f in files if f.path == LAST), None)
        final = {"readme": readme and not readme.matches(remote.get(LAST)),
                 "delete": sorted(p for p in remote if p.startswith(MANAGED_DIRS) and p not in local)}

        def refresh_final():
            now = self.remote_files()
            final["readme"] = readme and not readme.matches(now.get(LAST))
            final["delete"] = sorted(p for p in now if p.startswith(MANAGED_DIRS) and p not in local)

        def commit_final():
            ops = [CommitOperationDelete(path_in_repo=p) for p in final["delete"]]
            if final["readme"]:
                ops.append(CommitOperationAdd(path_in_repo=LAST, path_or_fileobj=str(readme.abspath)))
            if not ops:
                return None
            return self.api.create_commit(self.repo_id, ops, repo_type="dataset", revision=self.revision,
                                          commit_message=f"{commit_message}: dataset card")
        if self.call("commit the dataset card", commit_final, before_retry=refresh_final) is not None:
            self.report.commits += 1
            if final["readme"]:
                self.report.uploaded.append(LAST)
                self.report.bytes_uploaded += readme.size
            self.report.deleted = final["delete"]
        self.on_progress(total, total)
        return self.report
