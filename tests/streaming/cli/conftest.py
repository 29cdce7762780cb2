"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_spark(monkeypatch):
    """Fail the test if anything asks for a Spark session."""
    import streaming.cli.handlers as cli
    import streaming.lakehouse.session as session

    def refuse(*args, **kwargs):
        pytest.fail("Spark was started for a user error")

    monkeypatch.setattr(session, "get_spark", refuse)
    monkeypatch.setattr(cli, "_spark", refuse)
