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
