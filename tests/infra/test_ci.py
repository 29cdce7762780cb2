"""CI fails when it cannot run a check: the checkov scan that cannot be installed is a SKIP for a person and
a failure under CI=true; .ci/run sets CI=true, runs ruff and lint-imports, and refuses to run without a browser."""

from __future__ import annotations

import os
import subprocess

import pytest
from support import REPO


@pytest.mark.parametrize(("ci", "code", "word"), [("true", 3, "FAILED"), ("", 0, "SKIP")])
def test_checkov_that_cannot_be_installed(tmp_path, ci, code, word):
    env = {**os.environ, "CI": ci, "PYTHON": "/bin/false", "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run(["bash", str(REPO / "infra" / "checkov.sh")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    assert f"checkov.sh: {word}: could not install checkov" in result.stdout + result.stderr
    assert "infra/ was NOT scanned" in result.stdout + result.stderr


def test_ci_runs_every_check_and_skips_none():
    script = (REPO / ".ci" / "run").read_text()
    assert 'export CI="${CI:-true}"' in script
    for step in ("bash infra/checkov.sh", ".venv/bin/ruff check .", ".venv/bin/lint-imports", "./setup.sh test"):
        assert step in script, step
    assert script.index("ruff check") < script.index("setup.sh test")
    assert 'if [ "$CI" = "true" ] && ! have_browser; then' in script
