"""Expert review: the verification queue, reviewers and their tokens, the web app, metrics and Label Studio interop.

Everything lives in the workspace's `catalog.sqlite` (tables `review_*`, created by `catalog.schema` when the
catalog opens); decisions reach the records through the Catalog API; `queue`'s docstring says which module
owns what. The web server needs the `review` extra (FastAPI, uvicorn, Jinja2).
"""

from .common import DECISIONS, REASONS, Conflict, NotFound, guideline_version
from .queue import ReviewQueue

__all__ = ["DECISIONS", "REASONS", "Conflict", "NotFound", "ReviewQueue", "guideline_version"]
