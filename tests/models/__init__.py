"""Model-side tests (a package, so its conftest is `models.conftest` and never shadows tests/conftest.py)."""
