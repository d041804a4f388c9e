"""Reviewers, their tokens and browser sessions.

A token is 32 random bytes (URL-safe base64), printed once by `review add-reviewer`; only its
SHA-256 is stored. Lookups go by the hash and the stored hash is compared with `hmac.compare_digest`.
The page logs in with the token and then holds a session cookie (HttpOnly, SameSite=Strict, its
own random id, hashed in `review_sessions`) plus a CSRF token that every state-changing request
sends back in `X-CSRF-Token`.

These functions own `review_reviewers` and `review_sessions` (created by `catalog.schema`); every
write goes through `catalog.transaction`, under the process's `WRITE_LOCK`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Optional

from ..catalog import transaction
from ..errors import RunError
from .common import WRITE_LOCK, Reviewer

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SESSION_SECONDS = 12 * 3600


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def add_reviewer(db: sqlite3.Connection, name: str, admin: bool = False) -> tuple[Reviewer, str]:
    """Create a reviewer (or give an existing one a new token, revoking the old); returns the token once."""
    if not NAME_RE.match(name):
        raise RunError(f"reviewer name {name!r}: 1-64 of letters, digits, '_', '.', '@', '-'")
    token = secrets.token_urlsafe(32)
    with WRITE_LOCK, transaction(db):
        row = db.execute("SELECT id FROM review_reviewers WHERE name = ?", (name,)).fetchone()
        if row:
            db.execute("UPDATE review_reviewers SET token_hash = ?, is_admin = ?, active = 1, origin = 'local' "
                       "WHERE id = ?", (hash_token(token), int(admin), row[0]))
            db.execute("DELETE FROM review_sessions WHERE reviewer_id = ?", (row[0],))
            rid = row[0]
        else:
            rid = db.execute("INSERT INTO review_reviewers (name, token_hash, is_admin, created_at) "
                             "VALUES (?, ?, ?, ?)", (name, hash_token(token), int(admin), time.time())).lastrowid
    return Reviewer(int(rid), name, admin), token


def revoke_reviewer(db: sqlite3.Connection, name: str) -> bool:
    """Disable the reviewer's token and end their sessions; False if there is no such reviewer."""
    with WRITE_LOCK, transaction(db):
        cur = db.execute("UPDATE review_reviewers SET token_hash = NULL, active = 0 WHERE name = ?", (name,))
        row = db.execute("SELECT id FROM review_reviewers WHERE name = ?", (name,)).fetchone()
        if row:
            db.execute("DELETE FROM review_sessions WHERE reviewer_id = ?", (row[0],))
    return cur.rowcount > 0


def external_reviewer(db: sqlite3.Connection, name: str, origin: str) -> Reviewer:
    """A reviewer known from an import (Label Studio): no token, cannot log in."""
    with WRITE_LOCK, transaction(db):
        row = db.execute("SELECT id, is_admin FROM review_reviewers WHERE name = ?", (name,)).fetchone()
        if row:
            return Reviewer(row[0], name, bool(row[1]))
        rid = db.execute("INSERT INTO review_reviewers (name, token_hash, is_admin, active, origin, created_at) "
                         "VALUES (?, NULL, 0, 0, ?, ?)", (name, origin, time.time())).lastrowid
    return Reviewer(int(rid), name, False)


def verify_token(db: sqlite3.Connection, token: Optional[str]) -> Optional[Reviewer]:
    if not token or len(token) > 256:
        return None
    digest = hash_token(token)
    row = db.execute("SELECT id, name, is_admin, token_hash FROM review_reviewers WHERE token_hash = ? AND active = 1",
                     (digest,)).fetchone()
    if row is None or not hmac.compare_digest(row[3], digest):
        return None
    return Reviewer(row[0], row[1], bool(row[2]))


def create_session(db: sqlite3.Connection, reviewer: Reviewer) -> tuple[str, str]:
    """A new browser session: (cookie value, csrf token)."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = time.time()
    with WRITE_LOCK, transaction(db):
        db.execute("DELETE FROM review_sessions WHERE expires_at < ?", (now,))
        db.execute("INSERT INTO review_sessions VALUES (?, ?, ?, ?)", (hash_token(sid), reviewer.id, csrf,
                                                                     now + SESSION_SECONDS))
    return sid, csrf


def session(db: sqlite3.Connection, sid: Optional[str]) -> Optional[tuple[Reviewer, str]]:
    """The session's reviewer and csrf token, or None (unknown, expired or revoked)."""
    if not sid or len(sid) > 256:
        return None
    digest = hash_token(sid)
    row = db.execute("SELECT s.id_hash, r.id, r.name, r.is_admin, s.csrf FROM review_sessions s "
                     "JOIN review_reviewers r ON r.id = s.reviewer_id "
                     "WHERE s.id_hash = ? AND s.expires_at >= ? AND r.active = 1", (digest, time.time())).fetchone()
    if row is None or not hmac.compare_digest(row[0], digest):
        return None
    return Reviewer(row[1], row[2], bool(row[3])), row[4]


def end_session(db: sqlite3.Connection, sid: Optional[str]) -> None:
    if sid:
        with WRITE_LOCK, transaction(db):
            db.execute("DELETE FROM review_sessions WHERE id_hash = ?", (hash_token(sid),))


def csrf_ok(expected: str, given: Optional[str]) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))


class LoginThrottle:
    """Failed logins per client address: logged, and after `limit` failures within `window` seconds that
    address gets 429 (with Retry-After) until its oldest failure leaves the window, right token or not."""

    def __init__(self, limit: int = 5, window: float = 300.0, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.failures: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def _recent(self, client: str, now: float) -> list[float]:
        recent = [t for t in self.failures.get(client, []) if t > now - self.window]
        if recent:
            self.failures[client] = recent
        else:
            self.failures.pop(client, None)
        return recent

    def retry_after(self, client: str) -> float:
        """Seconds this address must wait before its next attempt (0: go ahead)."""
        with self.lock:
            now = self.clock()
            recent = self._recent(client, now)
            return max(0.0, recent[-self.limit] + self.window - now) if len(recent) >= self.limit else 0.0

    def failed(self, client: str) -> int:
        """Record a failure; returns how many this address has within the window."""
        with self.lock:
            now = self.clock()
            recent = self._recent(client, now)
            recent.append(now)
            self.failures[client] = recent
            if len(self.failures) > 10000:  # bound the memory a scan from many addresses can take
                self.failures.pop(next(iter(self.failures)))
            return len(recent)


def private(catalog_path: Path) -> None:
    """Make the catalog (token hashes, sessions, the audit log) and its WAL files readable by the owner only."""
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(catalog_path) + suffix)
        if path.exists() and path.stat().st_mode & 0o777 != 0o600:
            path.chmod(0o600)
