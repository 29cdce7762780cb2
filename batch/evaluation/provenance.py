"""Where the lakehouse's images came from, as far as the report needs to know: synthetic or not.

`xray demo` writes a marker (``<lakehouse>/_demo/synthetic.json``) before it stages generated images; the
report then shows a plain caution, since generated classes are easy to tell apart and score near 1.000.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

from streaming.core.config import XrayConfig

log = logging.getLogger(__name__)

MARKER = Path("_demo") / "synthetic.json"


def marker_path(config: XrayConfig) -> Path:
    return config.root / MARKER


def mark_synthetic(config: XrayConfig, images: int, seed: int) -> Path:
    """Record that generated images were staged into this lakehouse (kept across runs: they stay there)."""
    path = marker_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = synthetic_data(config) or {}
    record = {"created": previous.get("created") or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "images": max(int(previous.get("images") or 0), int(images)), "seed": seed,
              "generator": "streaming.imaging.synthetic"}
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def synthetic_data(config: XrayConfig) -> dict | None:
    """The marker's record when this lakehouse holds generated images, else None."""
    path = marker_path(config)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("unreadable synthetic-data marker %s (%s); treating the data as synthetic", path, error)
        return {"unreadable": str(path)}
    return record if isinstance(record, dict) else {"unreadable": str(path)}
