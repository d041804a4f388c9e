"""The review API's request bodies: the JSON each POST takes, with the bounds that keep bad input a 4xx.

Every field is bounded (string lengths, number ranges), so an oversized or overflowing value is refused
by validation with a short message instead of reaching SQLite or the templates.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import BaseModel, Field

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_ID = (1 << 62) - 1  # event ids fit SQLite's 64-bit integers with room to spare


class ReviewBody(BaseModel):
    decision: str = Field(..., max_length=16)
    version: str = Field(..., max_length=64)  # the opaque lease token the item came with
    caption: Optional[str] = Field(None, max_length=8000)
    reason: Optional[str] = Field(None, max_length=200)
    labels: Optional[dict[str, Any]] = None
    time_spent_ms: Optional[float] = Field(None, ge=0, le=1e9)
    note: Optional[str] = Field(None, max_length=2000)


class UndoBody(BaseModel):
    event_id: Optional[int] = Field(None, ge=1, le=MAX_ID)


class CheckBody(BaseModel):
    caption: str = Field(..., max_length=8000)
