"""Landing files outside a label folder. A file's label and split come from the ``<split>/<LABEL>/`` folders of
its path in landing (``landing/train/PNEUMONIA/x.jpeg``); a file dropped at the landing root, or into any
other folder, has none. That is right for images to classify (``landing/unlabelled/``, where `xray
ingest-folder` puts them), a mistake otherwise: gold scores the image but training never sees it. Bronze's
batch says so in one WARNING line and its ``pipeline_events`` message, with path refs, never names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from streaming.core.names import UNLABELLED
from streaming.core.paths import parse_xray_path
from streaming.core.pseudonym import short_ref

__all__ = ["outside_label_folders", "unlabelled_note"]

SHOWN_REFS = 5


def outside_label_folders(landing: Path, paths: Sequence[str]) -> list[int]:
    """The positions of ``paths`` whose folders in landing give no label and are not ``unlabelled/``."""
    root = os.path.realpath(landing)
    stray = []
    for position, path in enumerate(paths):
        relative = os.path.relpath(path, root) if os.path.isabs(path) else path
        folders = [part.lower() for part in Path(relative).parts[:-1]]
        if parse_xray_path(relative).label is None and UNLABELLED not in folders:
            stray.append(position)
    return stray


def unlabelled_note(refs: Sequence[str]) -> str:
    """The line for files outside a label folder (``refs``: their path refs; no path: it goes to events)."""
    shown = ", ".join(short_ref(ref) for ref in refs[:SHOWN_REFS]) + (" ..." if len(refs) > SHOWN_REFS else "")
    return (f"{len(refs)} file(s) outside a label folder of landing, so without a label (path_ref {shown}): gold "
            f"scores them, training does not use them; put labelled images in landing/<split>/<LABEL>/ (e.g. "
            f"landing/train/PNEUMONIA/) and images to classify in landing/{UNLABELLED}/")
