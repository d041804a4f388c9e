"""The reviewer's API: the next item, an item with its image and mask, decisions (and an admin's
adjudication of one item), live caption checks, undo and history.

Blind double review: an item is visible to a reviewer who is no admin only while they hold its
lease, and the answer to their decision on a double-reviewed item holds no state or outcome.
Routes are registered in this order on purpose: `/api/items/{key}/image` (and the other suffixed
routes) must come before the catch-all `/api/items/{key}`.
"""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from ..bodies import IDEMPOTENCY_KEY, MAX_ID, CheckBody, ReviewBody, UndoBody
from ..common import DECISIONS, Invalid, NotFound, Reviewer, run_checks
from ..context import admin_user, api_user, checked_key, context
from ..gate import parsed

router = APIRouter()


@router.post("/api/next")
def api_next(request: Request, reviewer: Reviewer = Depends(api_user)):
    item = context(request).queue().next_item(reviewer)
    if item is None:
        return Response(status_code=204)
    return item


def media(request: Request, key: str, which: str) -> Response:
    """The item's image or mask, by catalog key (the store reference comes from the record)."""
    ctx = context(request)
    record = ctx.queue().catalog.get(checked_key(key))
    if record is None:
        raise HTTPException(404, "not found")
    ref = record.image if which == "image" else record.mask
    if ref is None:
        raise HTTPException(404, "no mask")
    fmt = record.image_format if which == "image" else "png"
    data = ctx.store.read(ref)
    return Response(data, media_type="image/jpeg" if fmt == "jpeg" else "image/png",
                    headers={"Cache-Control": "private, max-age=3600", "ETag": f'"{ref}"'})


@router.get("/api/items/{key:path}/image")
def api_image(key: str, request: Request, _reviewer: Reviewer = Depends(api_user)):
    return media(request, key, "image")


@router.get("/api/items/{key:path}/mask")
def api_mask(key: str, request: Request, _reviewer: Reviewer = Depends(api_user)):
    return media(request, key, "mask")


@router.post("/api/items/{key:path}/review")
def api_review(key: str, request: Request, reviewer: Reviewer = Depends(api_user)):
    """A decision; `Idempotency-Key` makes a retry return the first answer instead of a conflict."""
    checked_key(key)
    idem = request.headers.get("idempotency-key")
    if idem is not None and not IDEMPOTENCY_KEY.match(idem):
        raise HTTPException(400, "Idempotency-Key: 1-128 of letters, digits, '_', '.', ':', '-'")
    body = parsed(request, ReviewBody)
    if body.decision not in DECISIONS:
        raise Invalid(f"decision must be one of {', '.join(DECISIONS)}")
    spent = body.time_spent_ms / 1000.0 if body.time_spent_ms is not None else None
    result = context(request).queue().submit(reviewer, key, body.decision, body.version, caption=body.caption,
                                             reason=body.reason, labels=body.labels, time_spent=spent,
                                             note=body.note, idempotency_key=idem)
    if not reviewer.is_admin and result.get("required_reviews", 1) > 1:
        result = {k: v for k, v in result.items() if k not in ("state", "outcome")}  # blind: nothing of the other
    return result


@router.post("/api/items/{key:path}/adjudicate")
def api_adjudicate(key: str, request: Request, admin: Reviewer = Depends(admin_user)):
    checked_key(key)
    body = parsed(request, ReviewBody)
    return context(request).queue().adjudicate(admin, key, body.decision, body.version, caption=body.caption,
                                               reason=body.reason, labels=body.labels)


@router.post("/api/items/{key:path}/check")
def api_check(key: str, request: Request, _reviewer: Reviewer = Depends(api_user)):
    body = parsed(request, CheckBody)
    record = context(request).queue().catalog.get(checked_key(key))
    if record is None:
        raise HTTPException(404, "not found")
    result = run_checks(record.model_copy(update={"caption": " ".join(body.caption.split()),
                                                  "caption_source": "expert"}))
    return result or {"passed": None, "results": {}, "reasons": []}


@router.get("/api/items/{key:path}")
def api_item(key: str, request: Request, reviewer: Reviewer = Depends(api_user)):
    """The item; a reviewer who is no admin sees it only while holding its lease (else 404)."""
    q = context(request).queue()
    checked_key(key)
    holder = q.leases.holds_lease(key, reviewer)
    if not holder and not reviewer.is_admin:
        raise NotFound(key)
    item = q.item(key, with_lease=holder)
    if reviewer.is_admin:
        item["decisions"] = [{"reviewer": n, "decision": d, "final_caption": f, "reason": r}
                             for n, d, f, r, _at in q.store.decisions_on(key)]
    return item


@router.post("/api/undo")
def api_undo(request: Request, reviewer: Reviewer = Depends(api_user)):
    return context(request).queue().undo(reviewer, parsed(request, UndoBody).event_id)


@router.get("/api/history")
def api_history(request: Request, before: Optional[int] = Query(None, ge=0, le=MAX_ID),
                limit: int = Query(1, ge=1, le=50), reviewer: Reviewer = Depends(api_user)):
    return {"items": context(request).queue().history(reviewer, before, limit)}
