"""Helpers shared by the test modules (fixtures live in conftest.py): where the repository is, and a table's
rows read straight from Delta (no Spark), as a test checks them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
"""The repository root: the working folder of subprocesses that import the project."""


def table_rows(config, name: str, columns: list[str] | None = None) -> list[dict]:  # XrayConfig
    """A table's rows (all, or the named columns) as dicts."""
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table(columns=columns).to_pylist()


def strings_in(value) -> list[str]:
    """Every string inside a value (lists, structs and maps included): what a privacy scan reads."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in strings_in(item)]
    return []


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; whether it held (the test then
    asserts on what happened rather than hanging)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True
