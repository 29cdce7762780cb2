"""Parse what a Kaggle "Chest X-Ray Images (Pneumonia)" style path says about an image.

The dataset encodes the label and the split in directory names
(``chest_xray/<split>/<LABEL>/<file>``) and the patient in the file name:

* ``IM-0115-0001.jpeg`` and ``IM-0429-0001-0002.jpeg`` -> patient ``IM-0115`` / ``IM-0429`` (normal)
* ``NORMAL2-IM-1234-0001.jpeg`` -> patient ``NORMAL2-IM-1234`` (normal)
* ``person123_bacteria_456.jpeg`` / ``person447_virus_921_1.jpeg`` -> patient ``person123`` /
  ``person447`` with pneumonia type ``bacteria`` / ``virus``

Parsing is purely lexical: nothing here touches the file system, so it works for URIs of remote
storage as well as for local paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from streaming.core.names import LABELS, SPLIT_ALIASES

__all__ = ["PathInfo", "parse_xray_path"]

_LABELS = {label.lower(): label for label in LABELS}
_SPLITS = SPLIT_ALIASES

# Patient prefixes the dataset uses; "NORMAL2-" is the second batch of normal studies, kept in the key
# because its IM numbers overlap with (and are not the same patients as) the plain "IM-" ones.
_IM_PATIENT = re.compile(r"^((?:NORMAL\d*-)?IM-\d+)(?:-\d+)+$", re.IGNORECASE)
_PERSON_PATIENT = re.compile(r"^(person\d+)_(bacteria|virus)(?:_\d+)*$", re.IGNORECASE)
# A bare "person12" (no type) still names a patient.
_PERSON_ONLY = re.compile(r"^(person\d+)(?:_\d+)*$", re.IGNORECASE)


@dataclass(frozen=True)
class PathInfo:
    """What a path says about an X-ray image; every field is ``None`` when the path does not say it."""

    label: str | None
    """``"NORMAL"`` or ``"PNEUMONIA"`` from the nearest directory named so (case-insensitive)."""
    split: str | None
    """``"train"``, ``"test"`` or ``"val"`` from the nearest directory named so (``validation`` -> ``val``)."""
    patient_key: str | None
    """Raw patient identifier taken from the file name, e.g. ``IM-0115`` or ``person123``."""
    pneumonia_type: str | None
    """``"bacteria"`` or ``"virus"`` when the file name says so."""


def _components(path: str) -> list[str]:
    """Split a plain path or a URI into its non-empty components, accepting either separator."""
    text = path.strip()
    # Only treat it as a URI when the scheme is longer than one letter: "C:\\x" is a Windows drive.
    scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", text)
    if scheme_match:
        text = unquote(urlparse(text).path)
    return [part for part in re.split(r"[\\/]+", text) if part]


def _patient(stem: str) -> tuple[str | None, str | None]:
    """Return (patient_key, pneumonia_type) from a file name without its extension."""
    match = _IM_PATIENT.match(stem)
    if match:
        return match.group(1), None
    match = _PERSON_PATIENT.match(stem)
    if match:
        return match.group(1), match.group(2).lower()
    match = _PERSON_ONLY.match(stem)
    if match:
        return match.group(1), None
    return None, None


def parse_xray_path(path: str) -> PathInfo:
    """Parse label, split, patient and pneumonia type from a file path or URI.

    ``path`` may be a plain POSIX or Windows path or a URI such as ``file:///data/x.jpeg`` or
    ``s3a://bucket/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg``. Label and split come from the
    directory components nearest to the file, so ``.../train/NORMAL/...`` nested inside an unrelated
    ``test`` folder is still ``train``. Unknown layouts yield ``None`` fields, never an error.
    """
    parts = _components(path)
    if not parts:
        return PathInfo(None, None, None, None)
    name, directories = parts[-1], parts[:-1]

    label = split = None
    for part in reversed(directories):
        key = part.lower()
        if label is None and key in _LABELS:
            label = _LABELS[key]
        if split is None and key in _SPLITS:
            split = _SPLITS[key]
        if label is not None and split is not None:
            break

    stem = name.rsplit(".", 1)[0] if "." in name else name
    patient_key, pneumonia_type = _patient(stem)
    return PathInfo(label=label, split=split, patient_key=patient_key, pneumonia_type=pneumonia_type)
