"""The data source's options and paths as Spark hands them over."""

from __future__ import annotations

from typing import Any

TRUE_VALUES = {"true", "1", "yes"}


def local_path(path: str) -> str:
    """A filesystem path for a plain path or a ``file:`` URI."""
    if path.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(path).path)
    return path


def lower_keys(options: Any) -> dict[str, str]:
    # Spark hands options over case-insensitively; plain dicts keyed in lower case keep that when pickled.
    return {str(k).lower(): str(v) for k, v in options.items()}


def user_metadata(options: dict[str, str]) -> dict[str, Any] | None:
    return {"userMetadata": options["usermetadata"]} if options.get("usermetadata") else None
