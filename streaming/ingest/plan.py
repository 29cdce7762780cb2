"""What a staging run puts where: the images a source holds, their ``split/LABEL`` folder in landing, the
sample and the copies staged once. Pure: reads nothing, writes nothing.

Layout in landing: ``<split>/<LABEL>/<name>`` (``train/NORMAL/IM-0001-0001.jpeg``), or ``unlabelled/<name>``
when neither the source path nor a labels file says the label (``unsplit/<LABEL>/<name>`` when they say
the label only).
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from streaming.core.names import UNLABELLED, is_image_name
from streaming.core.paths import parse_xray_path
from streaming.ingest.options import StagingOptions

log = logging.getLogger(__name__)


UNSPLIT = "unsplit"
# Folders of packaging debris, never images of the dataset (macOS resource forks in the Kaggle zip).
IGNORED_FOLDERS = ("__MACOSX",)

__all__ = ["IGNORED_FOLDERS", "UNLABELLED", "PlannedFile", "SourceImage", "in_ignored_folder", "plan_staging"]


def in_ignored_folder(parts: Sequence[str]) -> bool:
    """Whether a path's folders (not its file name) include a hidden folder or packaging debris."""
    return any(part in IGNORED_FOLDERS or part.startswith(".") for part in parts)


@dataclass(frozen=True)
class SourceImage:
    """An image found in a source: its path relative to the source (``/``-separated) and size.

    ``fingerprint`` identifies the content when that is cheap to know (a zip member's CRC); two sources
    with the same landing name and fingerprint are the same image and staged once. ``dicom``: DICOM by
    extension, or by content for an extensionless or UID name (the listing read its first 132 bytes, so
    the plan keeps it although its name is no image name). ``label`` and ``split``: given by a labels file
    (`streaming.ingest.labels`); they take the place of what the path says.
    """

    source: str
    size: int
    fingerprint: str | None = None
    dicom: bool = False
    label: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class PlannedFile:
    """One image to stage: where it comes from and where it goes under landing."""

    source: str
    size: int
    split: str | None
    label: str | None
    name: str

    @classmethod
    def of(cls, image: SourceImage, source_prefix: str = "") -> PlannedFile:
        """Where ``image`` goes: split and label from its path, read after ``source_prefix`` (the staged
        folder's own name counts too: staging ``.../train`` keeps split ``train``), unless a labels file
        gave them (a labels file without split keeps the path's split)."""
        path = f"{source_prefix.rstrip('/')}/{image.source}" if source_prefix else image.source
        info = parse_xray_path(path)
        return cls(image.source, image.size, image.split or info.split, image.label or info.label,
                   PurePosixPath(image.source).name)

    @property
    def group(self) -> str:
        """``split/LABEL`` (``train/NORMAL``), or ``unlabelled``."""
        if self.label is None:
            return UNLABELLED
        # A label without a split is still worth keeping for training: "unsplit" is no split name.
        return f"{self.split or UNSPLIT}/{self.label}"

    @property
    def target(self) -> PurePosixPath:
        """The path relative to landing, before any rename for a name clash."""
        return PurePosixPath(self.group, self.name)


def plan_staging(
    files: Iterable[SourceImage],
    options: StagingOptions | None = None,
    source_prefix: str = "",
) -> list[PlannedFile]:
    """Decide which images go where in landing.

    Split and label come from the source path (nearest ``train|test|val`` and ``NORMAL|PNEUMONIA``
    folders, at any depth). Images of a split not in ``options.splits`` are left out; images whose split or
    label is unknown go to ``unlabelled``. Copies of one image (same landing path and fingerprint, like the
    Kaggle zip's nested ``chest_xray/chest_xray`` duplicate) are planned once, the shallowest path first.
    With ``options.sample_per_class`` N, at most N images per split/LABEL (and N unlabelled) are chosen at
    random; each group draws from its own generator seeded by ``options.seed`` and the group name, so the
    sample of one group does not depend on which other splits were asked for. Sorted by target.
    """
    options = options or StagingOptions()
    wanted = set(options.splits)
    groups: dict[str, list[PlannedFile]] = defaultdict(list)
    seen: dict[tuple[PurePosixPath, str], str] = {}
    for image in sorted(files, key=lambda f: (f.source.count("/"), f.source)):
        parts = PurePosixPath(image.source).parts
        if not parts or not (image.dicom or is_image_name(parts[-1])) or in_ignored_folder(parts[:-1]):
            continue
        planned = PlannedFile.of(image, source_prefix)
        if planned.split is not None and planned.split not in wanted:
            continue
        if image.fingerprint is not None:
            key = (planned.target, image.fingerprint)
            if key in seen:
                log.debug("%s is a copy of %s; staged once", image.source, seen[key])
                continue
            seen[key] = image.source
        groups[planned.group].append(planned)
    return _sample(groups, options)


def _sample(groups: dict[str, list[PlannedFile]], options: StagingOptions) -> list[PlannedFile]:
    chosen: list[PlannedFile] = []
    limit = options.sample_per_class
    for group, members in sorted(groups.items()):
        if limit is not None and len(members) > limit:
            members = sorted(members, key=lambda p: p.source)
            members = random.Random(f"{options.seed}:{group}").sample(members, limit)
        chosen.extend(members)
    return sorted(chosen, key=lambda p: (str(p.target), p.source))
