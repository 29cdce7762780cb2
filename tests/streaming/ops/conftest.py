"""Fixtures of the ops tests (the session kept between commands is tests/conftest.py's, for every test)."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_spark(monkeypatch):
    """Fail the test if anything asks for a Spark session (`xray sql` reads without Spark)."""
    import streaming.lakehouse.session as session

    def refuse(*_args, **_kwargs):
        raise AssertionError("xray sql started Spark")

    monkeypatch.setattr(session, "get_spark", refuse)
