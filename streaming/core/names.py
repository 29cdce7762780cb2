"""The project's vocabulary, defined once: class labels, dataset splits, layer (query) names and which
landing file names are images (JPEG, PNG and DICOM by extension; extensionless DICOM by content, see
`streaming.core.dicomfile`).

Every module that needs one of these imports it from here, so a rule never drifts between the scan, the
staging, the watcher, the benchmark and the docs.
"""

from __future__ import annotations

__all__ = [
    "IGNORED_SUFFIXES",
    "IMAGE_SUFFIXES",
    "LABELS",
    "LABEL_CODES",
    "LAYERS",
    "NORMAL",
    "PNEUMONIA",
    "SPLITS",
    "SPLIT_ALIASES",
    "UNLABELLED",
    "DICOM_SUFFIXES",
    "is_ignored_name",
    "is_image_name",
    "may_be_dicom_name",
]

NORMAL, PNEUMONIA = "NORMAL", "PNEUMONIA"
LABELS = (NORMAL, PNEUMONIA)
"""Class labels, in the order of their codes (0 NORMAL, 1 PNEUMONIA: the positive class)."""
LABEL_CODES = {NORMAL: 0, PNEUMONIA: 1}

SPLITS = ("train", "val", "test")
"""Dataset splits; ``test`` is never used for training."""
SPLIT_ALIASES = {"train": "train", "test": "test", "val": "val", "validation": "val"}

UNLABELLED = "unlabelled"
"""The landing folder of images to classify (no label): ``landing/unlabelled/``, beside ``<split>/<LABEL>/``."""

LAYERS = ("bronze", "silver", "gold")
"""The medallion layers, in data order; each streaming query is named after its layer."""

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", *DICOM_SUFFIXES)
IGNORED_SUFFIXES = (".tmp", ".part", "._copying_")


def is_ignored_name(name: str) -> bool:
    """Hidden (``.*``, ``_*``) and temporary (``*.tmp``, ``*.part``, ``*._COPYING_``) names: a file or folder
    being copied, or not meant for the pipeline."""
    return name.startswith((".", "_")) or name.lower().endswith(IGNORED_SUFFIXES)


def is_image_name(name: str) -> bool:
    """Whether a landing file of this name is picked up: image extensions in any case, not ignored."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not is_ignored_name(name)


def may_be_dicom_name(name: str) -> bool:
    """Names a PACS export gives DICOM files: no extension (``IM000001``) or a UID (``1.2.840.113619.2.5``,
    whose last part is digits). Such a file is an input when its content starts like DICOM
    (`streaming.core.dicomfile.has_dicom_preamble`); anything else with another extension is not looked at."""
    if is_ignored_name(name) or is_image_name(name):
        return False
    return "." not in name or name.rsplit(".", 1)[1].isdigit()
