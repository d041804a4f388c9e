"""Expert review: the verification queue, reviewers and their tokens, the web app, metrics and Label Studio interop.

Everything lives in the workspace's `catalog.sqlite` (tables `review_*`, created on first use); decisions
reach the records through the Catalog API. The web server needs the `review` extra (FastAPI, uvicorn, Jinja2).
"""

from .queue import (
    DECISIONS,
    REASONS,
    Conflict,
    NotFound,
    ReviewQueue,
    guideline_version,
)

__all__ = ["DECISIONS", "REASONS", "Conflict", "NotFound", "ReviewQueue", "guideline_version"]
