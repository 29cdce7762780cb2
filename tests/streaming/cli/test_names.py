"""Every module the docs name exists: a dotted ``streaming.``/``batch.`` name (or a ``streaming/…`` path) in the
README, ARCHITECTURE.md, a docstring, a comment, a message or any ``xray … --help`` resolves to a module or
one of its attributes. A rename that leaves old names behind fails here."""

from __future__ import annotations

import importlib
import io
import re
import tokenize
from pathlib import Path

import pytest

from streaming.cli.table import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[3]
DOTTED = re.compile(r"(?<![\w/.\-])(?:streaming|batch)(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"(?<![\w/.\-])(?:streaming|batch)/[\w/.\-]*\w")


def resolves(name: str) -> bool:
    """A module, or a module's attribute (``streaming.core.errors.first_line``)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(value, attribute):
                return False
            value = getattr(value, attribute)
        return True
    return False


def texts(path: Path) -> list[str]:
    """The prose of a file: all of a Markdown or config file, the strings and comments of a Python file."""
    source = path.read_text()
    if path.suffix != ".py":
        return [source]
    return [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type in (tokenize.STRING, tokenize.COMMENT)]


def mentioned() -> dict[str, set[str]]:
    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "setup.cfg",
             *sorted((ROOT / "streaming").rglob("*.py")), *sorted((ROOT / "batch").rglob("*.py"))]
    names: dict[str, set[str]] = {}
    for path in files:
        for text in texts(path):
            for match in [*DOTTED.finditer(text), *PATH.finditer(text)]:
                names.setdefault(match.group(0).rstrip("."), set()).add(str(path.relative_to(ROOT)))
    return names


def test_every_dotted_module_name_in_the_docs_and_sources_resolves():
    stale = {name: sorted(where) for name, where in mentioned().items()
             if "/" not in name and not resolves(name)}
    assert stale == {}


def test_every_source_path_in_the_docs_and_sources_exists():
    missing = {name: sorted(where) for name, where in mentioned().items()
               if "/" in name and "*" not in name and not (ROOT / name).exists()}
    assert missing == {}


@pytest.mark.parametrize("name", [None, *(c.name for c in COMMANDS)])
def test_every_help_names_real_modules(name, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"] if name is None else [name, "--help"])
    text = capsys.readouterr().out
    assert text
    assert [n for n in DOTTED.findall(text) if not resolves(n)] == []


def test_the_quality_script_names_itself_rightly():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "batch.evaluation.evaluate_quality", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m batch.evaluation.evaluate_quality")
