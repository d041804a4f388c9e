"""Counts and the admins' adjudication list.

`/api/stats` gives a reviewer who is no admin only the item, open and leased counts: done, disputed
and flagged would tell how another reviewer answered a double-reviewed item.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request

from ..common import Reviewer, guideline_version
from ..context import admin_user, api_user, context

router = APIRouter()


@router.get("/api/stats")
def api_stats(request: Request, reviewer: Reviewer = Depends(api_user)):
    """Counts kept current by the decisions' own transactions; no admin gets only what reveals no decision."""
    q = context(request).queue()
    overall = q.progress()
    if not reviewer.is_admin:  # done/disputed/flagged would tell how another reviewer answered
        overall = {k: overall[k] for k in ("items", "open", "leased")}
    n, today = q.store.reviewer_counts(reviewer.id, time.time() - 86400)
    mine = {"name": reviewer.name, "admin": reviewer.is_admin, "decisions": n, "last_24h": today}
    return {"overall": overall, "me": mine, "guideline_version": guideline_version()}


@router.get("/api/adjudication")
def api_adjudication(request: Request, after: str = Query("", max_length=512), limit: int = Query(20, ge=1, le=100),
                     _admin: Reviewer = Depends(admin_user)):
    return {"items": context(request).queue().adjudication(after, limit)}
