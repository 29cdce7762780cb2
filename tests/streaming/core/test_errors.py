"""`core.errors.first_line`: the one line of an error that one-line messages and logs show."""

from __future__ import annotations

from streaming.core.errors import ConfigError, first_line


def test_the_first_non_blank_line_stripped():
    assert first_line(RuntimeError("\n  query failed: boom  \n\tat org.apache.spark...\n")) == "query failed: boom"


def test_an_exception_without_text_gives_its_type_name():
    assert first_line(ValueError()) == "ValueError"
    assert first_line(ConfigError("  \n ")) == "ConfigError"


def test_text_without_a_line_gives_nothing():
    assert first_line("") == ""
    assert first_line(" \n\n") == ""
    assert first_line("one\ntwo") == "one"


def test_an_unreachable_registry_with_an_empty_message_does_not_stop_the_stream(tmp_path, monkeypatch, caplog):
    """`champion` must answer None, not raise IndexError, when the registry's error has no text."""
    from streaming.core import registry
    from streaming.core.config import load_config

    def unreachable(config):
        raise ConnectionError()

    monkeypatch.setattr(registry, "configure_mlflow", unreachable)
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"), mlflow_tracking_uri="http://127.0.0.1:9")
    assert registry.champion(config) is None
    assert "model registry unavailable (ConnectionError)" in caplog.text


def test_no_inline_first_line_of_an_error_is_left():
    """Every one-line error goes through first_line: ``str(error).splitlines()[0]`` raises on an empty message."""
    import re
    from pathlib import Path

    inline = re.compile(r"(?:str\(\w+\)|\berror\w*)\.splitlines\(\)\[0\]")
    root = Path(__file__).resolve().parents[3]
    found = [f"{path.relative_to(root)}:{n}" for package in ("streaming", "batch")
             for path in sorted((root / package).rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if inline.search(line)]
    assert found == []
