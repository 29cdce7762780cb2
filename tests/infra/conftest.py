"""The parsed Terraform of infra/, shared by the modules of tests/infra/."""

from __future__ import annotations

from typing import Any

import pytest
from hcltools import load_infra


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return load_infra()
