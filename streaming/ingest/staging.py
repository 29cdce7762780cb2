"""Stage chest X-ray files into the landing folder, from Kaggle or from a local folder or archive.

The streaming job picks up every image that appears under ``<lakehouse>/landing``, so this module's one
promise is that an image only ever appears there complete: each file is written under a hidden temporary
name in its final folder (which the file source ignores), flushed to disk, then renamed. Downloads and
archive extraction happen in folders outside landing and are validated first (unsafe archive members,
missing images), so a failed run leaves nothing half-staged behind.

Layout in landing: ``<split>/<LABEL>/<name>`` (``train/NORMAL/IM-0001-0001.jpeg``), or
``unlabelled/<name>`` when the source path does not say both the split and the label. Every run appends a
row to ``bronze_kaggle_dataset_info`` describing what was staged.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import logging
import os
import random
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import IngestError
from streaming.core.paths import parse_xray_path

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "val")
UNLABELLED = "unlabelled"
UNSPLIT = "unsplit"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# Names the landing file source skips; staging them would be pointless, watching them would be wrong.
IGNORED_SUFFIXES = (".tmp", ".part", "._copying_")
# Folders of packaging debris, never images of the dataset (macOS resource forks in the Kaggle zip).
IGNORED_FOLDERS = ("__MACOSX",)

KAGGLE_TOKEN_URL = "https://www.kaggle.com/settings/api"

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "UNLABELLED",
    "PlannedFile",
    "SourceImage",
    "StagingReport",
    "archive_images",
    "ingest_folder",
    "ingest_kaggle",
    "is_ignored_name",
    "is_image_name",
    "place_file",
    "plan_staging",
    "safe_extract",
]


# ---- names --------------------------------------------------------------------------------------------
def is_ignored_name(name: str) -> bool:
    """True for names the landing file source skips: hidden (``.x``), ``_x``, and temporary suffixes."""
    lower = name.lower()
    return name.startswith((".", "_")) or lower.endswith(IGNORED_SUFFIXES)


def is_image_name(name: str) -> bool:
    """True for an X-ray file name the service ingests (``.jpeg/.jpg/.png``, any case, not ignored)."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not is_ignored_name(name)


def _in_ignored_folder(parts: Sequence[str]) -> bool:
    return any(part in IGNORED_FOLDERS or part.startswith(".") for part in parts)


# ---- planning -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceImage:
    """An image found in a source: its path relative to the source (``/``-separated) and size.

    ``fingerprint`` identifies the content when that is cheap to know (a zip member's CRC); two sources
    with the same landing name and fingerprint are the same image and staged once.
    """

    source: str
    size: int
    fingerprint: str | None = None


@dataclass(frozen=True)
class PlannedFile:
    """One image to stage: where it comes from and where it goes under landing."""

    source: str
    size: int
    split: str | None
    label: str | None
    name: str

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


def _check_options(sample_per_class: int | None, splits: Sequence[str], batch_files: int,
                   interval_seconds: float) -> tuple[str, ...]:
    if isinstance(splits, str):
        splits = tuple(s.strip() for s in splits.split(",") if s.strip())
    chosen = tuple(dict.fromkeys(s.lower() for s in splits))
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown or not chosen:
        raise IngestError(
            f"unknown split(s) {', '.join(unknown) or '(none)'}; choose among {', '.join(SPLITS)}"
        )
    if sample_per_class is not None and sample_per_class < 1:
        raise IngestError(
            f"--sample must be at least 1 (got {sample_per_class}); omit it to stage everything"
        )
    if batch_files < 0 or interval_seconds < 0:
        raise IngestError("--batch-files and --interval-seconds must be >= 0")
    return chosen


def plan_staging(
    files: Iterable[SourceImage],
    sample_per_class: int | None = None,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    source_prefix: str = "",
) -> list[PlannedFile]:
    """Decide which images go where in landing. Pure: reads nothing, writes nothing.

    Split and label come from the source path (nearest ``train|test|val`` and ``NORMAL|PNEUMONIA``
    folders, at any depth). Images of a split not in ``splits`` are left out; images whose split or label
    is unknown go to ``unlabelled``. Copies of one image (same landing path and fingerprint, like the
    Kaggle zip's nested ``chest_xray/chest_xray`` duplicate) are planned once, the shallowest path first.
    With ``sample_per_class`` N, at most N images per split/LABEL (and N unlabelled) are chosen at
    random; each group draws from its own generator seeded by ``seed`` and the group name, so the sample
    of one group does not depend on which other splits were asked for. The result is sorted by target.
    """
    wanted = set(_check_options(sample_per_class, splits, 0, 0.0))
    groups: dict[str, list[PlannedFile]] = defaultdict(list)
    seen: dict[tuple[PurePosixPath, str], str] = {}
    ordered = sorted(files, key=lambda f: (f.source.count("/"), f.source))
    for image in ordered:
        parts = PurePosixPath(image.source).parts
        if not parts or not is_image_name(parts[-1]) or _in_ignored_folder(parts[:-1]):
            continue
        # The staged folder's own name counts too: staging ".../train" keeps split "train".
        info = parse_xray_path(f"{source_prefix.rstrip('/')}/{image.source}" if source_prefix else image.source)
        if info.split is not None and info.split not in wanted:
            continue
        planned = PlannedFile(image.source, image.size, info.split, info.label, parts[-1])
        if image.fingerprint is not None:
            key = (planned.target, image.fingerprint)
            if key in seen:
                log.debug("%s is a copy of %s; staged once", image.source, seen[key])
                continue
            seen[key] = image.source
        groups[planned.group].append(planned)

    chosen: list[PlannedFile] = []
    for group, members in sorted(groups.items()):
        if sample_per_class is not None and len(members) > sample_per_class:
            members = sorted(members, key=lambda p: p.source)
            members = random.Random(f"{seed}:{group}").sample(members, sample_per_class)
        chosen.extend(members)
    return sorted(chosen, key=lambda p: (str(p.target), p.source))


# ---- archives -----------------------------------------------------------------------------------------
_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name could write outside the extraction folder, or None when it cannot."""
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith(("/", "\\")):
        return "is an absolute path"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in re.split(r"[\\/]+", name):
        return "climbs out with '..'"
    return None


def _refuse(archive: Path, member: str, reason: str) -> IngestError:
    return IngestError(
        f"refusing archive {archive.name}: member {member!r} {reason} and would escape the extraction "
        "folder; nothing was staged - get the archive from a trusted source"
    )


def _open_archive(archive: Path) -> zipfile.ZipFile | tarfile.TarFile:
    try:
        if zipfile.is_zipfile(archive):
            return zipfile.ZipFile(archive)
        if tarfile.is_tarfile(archive):
            return tarfile.open(archive, "r:*")
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise IngestError(f"cannot read archive {archive}: {error}; download it again") from None
    raise IngestError(f"{archive} is not a zip or tar archive; pass a folder or a .zip/.tar(.gz) file")


def _checked_members(archive: Path, handle: zipfile.ZipFile | tarfile.TarFile) -> list[tuple[str, int, Any]]:
    """(name, size, member) of every regular file, after refusing the archive if any member is unsafe."""
    files: list[tuple[str, int, Any]] = []
    if isinstance(handle, zipfile.ZipFile):
        for info in handle.infolist():
            reason = _unsafe_reason(info.filename)
            if reason:
                raise _refuse(archive, info.filename, reason)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise _refuse(archive, info.filename, "is a symbolic link")
            if not info.is_dir():
                files.append((info.filename, info.file_size, info))
        return files
    try:
        members = handle.getmembers()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise IngestError(f"cannot read archive {archive}: {error}; download it again") from None
    for member in members:
        reason = _unsafe_reason(member.name)
        if reason:
            raise _refuse(archive, member.name, reason)
        if member.issym() or member.islnk():
            raise _refuse(archive, member.name, f"is a {'symbolic' if member.issym() else 'hard'} link")
        if member.isdev() or member.isfifo():
            raise _refuse(archive, member.name, "is a device or pipe")
        if member.isfile():
            files.append((member.name, member.size, member))
    return files


def archive_images(archive: str | Path) -> list[SourceImage]:
    """The images in a zip or tar archive, after checking that every member is safe to extract.

    Raises `IngestError` naming the first member that would escape the extraction folder (``..``,
    absolute path, drive letter, link, device). Zip members carry their CRC as fingerprint.
    """
    archive = Path(archive)
    with _open_archive(archive) as handle:
        members = _checked_members(archive, handle)
    images = []
    for name, size, member in members:
        parts = PurePosixPath(name).parts
        if parts and is_image_name(parts[-1]) and not _in_ignored_folder(parts[:-1]):
            fingerprint = f"{member.CRC:08x}:{size}" if isinstance(member, zipfile.ZipInfo) else None
            images.append(SourceImage(name, size, fingerprint))
    return images


def _progress(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr, shown only on a terminal so logs and CI output stay clean."""
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                disable=None, file=sys.stderr, leave=False)


def safe_extract(archive: str | Path, target: str | Path, members: Iterable[str] | None = None) -> list[Path]:
    """Extract a zip or tar archive into ``target``, refusing it whole if any member is unsafe.

    Every member is checked before anything is written (``..``, absolute paths, drive letters, symbolic
    and hard links, devices), so a malicious archive leaves ``target`` untouched. ``members`` limits the
    extraction to those names (all regular files when None). Only file contents are written: no owners,
    modes or links from the archive. Returns the extracted paths.
    """
    archive, target = Path(archive), Path(target)
    with _open_archive(archive) as handle:
        files = _checked_members(archive, handle)
        if members is not None:
            wanted = set(members)
            files = [f for f in files if f[0] in wanted]
        total = sum(size for _, size, _ in files)
        target.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(target).free
        if total > free:
            raise IngestError(
                f"extracting {archive.name} needs {total / 2**30:.1f} GiB but {target} has "
                f"{free / 2**30:.1f} GiB free; free space or use --sample N"
            )
        root = target.resolve()
        written: list[Path] = []
        with _progress(total, f"extract {archive.name}") as bar:
            for name, _size, member in files:
                destination = root.joinpath(*re.split(r"[\\/]+", name.strip("/\\")))
                if not destination.resolve().is_relative_to(root):  # defence in depth after the name check
                    raise _refuse(archive, name, "resolves outside the folder")
                destination.parent.mkdir(parents=True, exist_ok=True)
                try:
                    if isinstance(handle, zipfile.ZipFile):
                        source = handle.open(member)
                    else:
                        source = handle.extractfile(member)
                        if source is None:
                            continue
                    with source, open(destination, "wb") as out:
                        while chunk := source.read(1024 * 1024):
                            out.write(chunk)
                            bar.update(len(chunk))
                except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as error:
                    raise IngestError(
                        f"archive {archive.name} is damaged at member {name!r} ({error}); download it again"
                    ) from None
                written.append(destination)
    return written


# ---- placing files into landing -----------------------------------------------------------------------
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)


def _same_content(a: Path, b: Path) -> bool:
    import filecmp

    try:
        return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _candidate_names(name: str) -> Iterator[str]:
    """The name, then suffixed variants that keep the patient parsed from the name (``-1`` or ``_1``)."""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    patient = parse_xray_path(name).patient_key
    separator = "-"
    if patient is not None and parse_xray_path(f"{stem}-1.{ext}").patient_key != patient:
        separator = "_"
    for number in range(1, 100_000):
        yield f"{stem}{separator}{number}{dot}{ext}"
    raise IngestError(f"too many different files named {name} in landing; rename the source files")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _write_hidden_copy(src: Path, folder: Path, name: str, move: bool) -> Path:
    """Put ``src``'s bytes, flushed to disk, under a hidden temporary name in ``folder``."""
    temporary = folder / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        moved = False
        if move:
            try:
                os.rename(src, temporary)
                moved = True
            except OSError as error:
                if error.errno != errno.EXDEV:
                    raise
        if moved:
            # A renamed file keeps its old mtime (cp -p, rsync -t); the file source skips files older than
            # maxFileAge relative to the newest one it has seen, so a landing file must look new.
            os.utime(temporary)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            with open(src, "rb") as reader, open(temporary, "xb") as writer:
                shutil.copyfileobj(reader, writer, 1024 * 1024)
                writer.flush()
                os.fsync(writer.fileno())
            if move:
                src.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return temporary


def place_file(src: str | Path, folder: str | Path, name: str, move: bool = False) -> tuple[Path, str]:
    """Make ``src`` appear as ``folder/name`` atomically; returns (path, status).

    The bytes go to a hidden temporary name in ``folder`` first (renamed there when ``move`` and on the
    same filesystem, else copied), are fsynced, then linked to the final name in one step, so readers
    never see a partial file. Status: ``placed``; ``duplicate`` when a file of that name with the same
    content is already there (nothing written; with ``move`` the source is removed); ``renamed`` when a
    different file holds the name and a suffixed name was used (``IM-0001-0001-1.jpeg``).
    """
    src, folder = Path(src), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    temporary: Path | None = None
    try:
        for candidate in _candidate_names(name):
            final = folder / candidate
            if final.exists():
                if _same_content(temporary or src, final):
                    if move and temporary is None:
                        src.unlink()
                    return final, "duplicate"
                continue
            if temporary is None:
                temporary = _write_hidden_copy(src, folder, name, move)
            try:
                # link() refuses to replace an existing name, so a file that appeared meanwhile (another
                # stager, the watcher) is never overwritten.
                os.link(temporary, final)
            except FileExistsError:
                if _same_content(temporary, final):
                    return final, "duplicate"
                continue
            except OSError as error:
                if error.errno not in _NO_HARD_LINKS:
                    raise
                # No hard links on this filesystem: fall back to a rename, atomic but able to clobber.
                if final.exists():
                    continue
                os.replace(temporary, final)
                temporary = None
            _fsync_dir(folder)
            return final, "placed" if candidate == name else "renamed"
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink()
    raise AssertionError("unreachable")  # pragma: no cover - _candidate_names raises when exhausted


# ---- the report ---------------------------------------------------------------------------------------
@dataclass
class StagingReport:
    """What a staging run put into landing."""

    dataset_ref: str
    source: str
    landing_dir: Path
    files_staged: int = 0
    bytes_staged: int = 0
    per_split_label: dict[str, int] = field(default_factory=dict)
    skipped_duplicates: int = 0
    renamed: int = 0
    staged_paths: list[Path] = field(default_factory=list)
    title: str | None = None
    version: int | None = None
    license: str | None = None

    def summary(self) -> str:
        """One line for the log."""
        groups = ", ".join(f"{k}={v}" for k, v in sorted(self.per_split_label.items())) or "none"
        return (
            f"staged {self.files_staged} files ({self.bytes_staged / 2**20:.1f} MiB) from {self.dataset_ref} "
            f"into {self.landing_dir} [{groups}]; {self.skipped_duplicates} duplicates skipped, "
            f"{self.renamed} renamed"
        )


def _stage(
    plan: list[PlannedFile],
    resolve: Callable[[PlannedFile], Path],
    report: StagingReport,
    move: bool,
    batch_files: int,
    interval_seconds: float,
    seed: int,
) -> None:
    """Place the planned files into landing, optionally ``batch_files`` at a time to simulate arrivals."""
    order = list(plan)
    if batch_files:
        # Mixed batches look like real arrivals: every micro-batch gets some of each class.
        random.Random(seed).shuffle(order)
    counts: Counter[str] = Counter()
    with _progress(len(order), "stage", unit="file") as bar:
        for index, planned in enumerate(order):
            if batch_files and index and index % batch_files == 0 and interval_seconds:
                time.sleep(interval_seconds)
            source = resolve(planned)
            size = source.stat().st_size
            path, status = place_file(source, report.landing_dir / planned.group, planned.name, move=move)
            bar.update(1)
            if status == "duplicate":
                report.skipped_duplicates += 1
                continue
            report.renamed += status == "renamed"
            report.files_staged += 1
            report.bytes_staged += size
            report.staged_paths.append(path)
            counts[planned.group] += 1
    report.per_split_label = dict(sorted(counts.items()))


def _staging_dir(config: XrayConfig) -> Path:
    """A fresh temporary folder under the lakehouse (same filesystem as landing, outside it)."""
    parent = config.root / ".staging"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=parent))


def _stage_archive(config: XrayConfig, archive: Path, report: StagingReport, sample_per_class: int | None,
                   splits: Sequence[str], seed: int, batch_files: int, interval_seconds: float) -> None:
    images = archive_images(archive)  # refuses an unsafe archive before anything is extracted
    if not images:
        raise IngestError(f"no X-ray images (.jpeg/.jpg/.png) in archive {archive}; check the dataset")
    plan = plan_staging(images, sample_per_class, splits, seed)
    if not plan:
        raise IngestError(f"no images of split(s) {', '.join(splits)} in archive {archive}; check --splits")
    workdir = _staging_dir(config)
    try:
        extracted = workdir / "extract"
        safe_extract(archive, extracted, members=[p.source for p in plan])
        for planned in plan:  # a short file means a damaged archive: stop before touching landing
            path = extracted.joinpath(*PurePosixPath(planned.source).parts)
            if not path.is_file() or path.stat().st_size != planned.size:
                raise IngestError(f"archive {archive.name} member {planned.source!r} did not extract whole; "
                                  "download it again")
        _stage(plan, lambda p: extracted.joinpath(*PurePosixPath(p.source).parts), report, True,
               batch_files, interval_seconds, seed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _folder_images(folder: Path, skip: Iterable[Path]) -> list[SourceImage]:
    """Images under ``folder`` at any depth (symlinked folders not followed; hidden folders skipped)."""
    skip_resolved = {p.resolve() for p in skip}
    images = []
    for directory, subdirs, names in os.walk(folder):
        here = Path(directory)
        subdirs[:] = sorted(
            d for d in subdirs
            if not d.startswith(".") and d not in IGNORED_FOLDERS
            and (here / d).resolve() not in skip_resolved
        )
        for name in sorted(names):
            path = here / name
            if is_image_name(name) and path.is_file():
                images.append(SourceImage(path.relative_to(folder).as_posix(), path.stat().st_size))
    # Same landing name twice (a nested copy of the dataset): hash those few so identical copies are
    # staged once and different ones both kept.
    by_target: dict[PurePosixPath, list[SourceImage]] = defaultdict(list)
    for image in images:
        info = parse_xray_path(f"{folder.name}/{image.source}")
        name = PurePosixPath(image.source).name
        by_target[PlannedFile(image.source, image.size, info.split, info.label, name).target].append(image)
    result = []
    for clashing in by_target.values():
        if len(clashing) == 1:
            result.extend(clashing)
        else:
            result.extend(SourceImage(i.source, i.size, _sha256(folder / i.source)) for i in clashing)
    return result


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _record(spark: Any, config: XrayConfig, report: StagingReport, options: dict[str, Any]) -> None:
    """Append the run's row to bronze_kaggle_dataset_info (starting Spark only now when given None)."""
    from streaming.lakehouse.catalog import BRONZE_KAGGLE_DATASET_INFO
    from streaming.lakehouse.engine import Lakehouse

    if spark is None:
        from streaming.lakehouse.session import get_spark

        spark = get_spark(config)

    lakehouse = Lakehouse(spark, config)
    lakehouse.ensure_tables()
    row = (
        report.dataset_ref,
        report.source,
        report.title,
        report.version,
        report.license,
        report.files_staged,
        report.bytes_staged,
        dict(report.per_split_label),
        json.dumps(options, sort_keys=True),
        datetime.now(timezone.utc),
    )
    frame = spark.createDataFrame([row], BRONZE_KAGGLE_DATASET_INFO.schema)
    lakehouse.append(frame, BRONZE_KAGGLE_DATASET_INFO.name)


def _options(sample_per_class: int | None, splits: Sequence[str], seed: int, batch_files: int,
             interval_seconds: float) -> dict[str, Any]:
    return {"sample_per_class": sample_per_class, "splits": list(splits), "seed": seed,
            "batch_files": batch_files, "interval_seconds": interval_seconds}


# ---- local folder ---------------------------------------------------------------------------------------
def ingest_folder(
    spark: Any,
    config: XrayConfig,
    path: str | Path,
    sample_per_class: int | None = None,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    batch_files: int = 0,
    interval_seconds: float = 0.0,
) -> StagingReport:
    """Stage the X-rays of a local folder (or a .zip/.tar of one) into landing and record the run.

    Images are found at any depth and keep their ``split/LABEL`` from the path (see `plan_staging`).
    Folder files are copied, never moved. Options as for `ingest_kaggle`. Raises `IngestError` when the
    path does not exist or holds no images. ``spark`` may be None: a session is then obtained only to
    record the run, so a bad path fails before any JVM starts.
    """
    splits = _check_options(sample_per_class, splits, batch_files, interval_seconds)
    source = Path(path).expanduser()
    if not source.exists():
        raise IngestError(
            f"{source} does not exist; pass a folder (or .zip) holding split/LABEL/*.jpeg images"
        )
    source = source.resolve()
    landing = config.landing_dir
    if source == landing or source.is_relative_to(landing):
        raise IngestError(f"{source} is inside the landing folder {landing}; stage from a folder outside it")
    report = StagingReport(str(source), "folder", landing)
    if source.is_file():
        _stage_archive(config, source, report, sample_per_class, splits, seed, batch_files, interval_seconds)
    else:
        images = _folder_images(source, skip=[config.root])
        if not images:
            raise IngestError(f"no X-ray images (.jpeg/.jpg/.png) under {source}; check the path")
        plan = plan_staging(images, sample_per_class, splits, seed, source_prefix=source.name)
        if not plan:
            raise IngestError(f"no images of split(s) {', '.join(splits)} under {source}; check --splits")
        _stage(plan, lambda p: source.joinpath(*PurePosixPath(p.source).parts), report, False,
               batch_files, interval_seconds, seed)
    _record(spark, config, report, _options(sample_per_class, splits, seed, batch_files, interval_seconds))
    log.info("%s", report.summary())
    return report


# ---- Kaggle ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Credentials:
    source: str  # where they came from, for messages (never the values)
    secrets: tuple[str, ...]  # values to scrub from anything we print or raise


def kaggle_config_file() -> Path:
    """The ``kaggle.json`` the kaggle client reads: ``$KAGGLE_CONFIG_DIR``, else ``~/.kaggle``, else (Linux,
    when ``~/.kaggle`` does not exist) ``$XDG_CONFIG_HOME/kaggle``."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser() / "kaggle.json"
    home = Path("~/.kaggle").expanduser()
    if sys.platform.startswith("linux") and not home.exists():
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
        return Path(xdg) / "kaggle" / "kaggle.json"
    return home / "kaggle.json"


def _read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _find_credentials() -> _Credentials:
    """Which Kaggle credentials exist, in the client's order; `IngestError` naming the options when none."""
    config_file = kaggle_config_file()
    file_data: dict[str, Any] = {}
    if config_file.is_file():
        if os.name != "nt" and config_file.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("Kaggle credentials file %s is readable by other users; run 'chmod 600 %s'",
                        config_file, config_file)
        try:
            loaded = json.loads(config_file.read_text() or "{}")
            file_data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            log.warning("cannot parse %s as JSON; ignoring it", config_file)

    token = os.environ.get("KAGGLE_API_TOKEN")
    if token:
        value = _read_token_file(Path(token)) if Path(token).is_file() else token
        return _Credentials("KAGGLE_API_TOKEN", tuple(s for s in (token, value) if s))
    for name in ("access_token", "access_token.txt"):
        value = _read_token_file(Path("~/.kaggle").expanduser() / name)
        if value:
            return _Credentials(f"~/.kaggle/{name}", (value,))

    username = os.environ.get("KAGGLE_USERNAME") or file_data.get("username")
    key = os.environ.get("KAGGLE_KEY") or file_data.get("key")
    if username and key:
        source = "KAGGLE_USERNAME/KAGGLE_KEY" if os.environ.get("KAGGLE_KEY") else str(config_file)
        basic = base64.b64encode(f"{username}:{key}".encode()).decode()
        return _Credentials(source, (str(key), basic))

    oauth_file = Path("~/.kaggle/credentials.json").expanduser()
    if oauth_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(oauth_file.read_text())
            if isinstance(data, dict) and data.get("refresh_token"):
                secrets = tuple(str(data[k]) for k in ("refresh_token", "access_token") if data.get(k))
                return _Credentials(str(oauth_file), secrets)

    half = " (KAGGLE_USERNAME is set but KAGGLE_KEY is not)" if username and not key else ""
    where = config_file if os.environ.get("KAGGLE_CONFIG_DIR") else "~/.kaggle/kaggle.json"
    raise IngestError(
        f"no Kaggle credentials found{half}: set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN, "
        f"or save kaggle.json as {where} (or in $KAGGLE_CONFIG_DIR) with chmod 600 - create a token at "
        f"{KAGGLE_TOKEN_URL}"
    )


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def _quiet_stdout(secrets: Iterable[str]) -> Iterator[None]:
    """Keep the kaggle client's prints (auth help, URLs, version nags) off stdout; log them at DEBUG."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("kaggle: %s", _redact(line, secrets))


def _kaggle_endpoint() -> str:
    from kagglesdk.kaggle_env import get_endpoint, get_env

    try:
        return get_endpoint(get_env())
    except Exception:  # noqa: BLE001 - kagglesdk raises a bare Exception for an unknown environment
        raise IngestError(
            f"KAGGLE_API_ENVIRONMENT={os.environ.get('KAGGLE_API_ENVIRONMENT')!r} is not a Kaggle "
            "environment; unset it (or use PROD)"
        ) from None


def _kaggle_api(secrets: tuple[str, ...]) -> Any:
    """A `KaggleApi` that reads the current environment each time it connects."""
    with _quiet_stdout(secrets):
        # Importing `kaggle` authenticates once as a side effect, printing help when it finds nothing.
        from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import KaggleClient
    from kagglesdk.kaggle_env import get_env

    class _Api(KaggleApi):
        def build_kaggle_client(self) -> Any:
            # KaggleApi fixes its endpoint when `kaggle` is first imported and knows only PROD and
            # LOCALHOST; kagglesdk reads KAGGLE_API_ENVIRONMENT itself (PROD, QA, TEST=localhost:7777, ...).
            # verbose stays off: the client's verbose mode prints request headers, credentials included.
            return KaggleClient(
                env=get_env(),
                verbose=False,
                username=self.config_values.get(self.CONFIG_NAME_USER),
                password=self.config_values.get(self.CONFIG_NAME_KEY),
                api_token=self.config_values.get(self.CONFIG_NAME_TOKEN),
                response_processor=self.get_response_processor(),
            )

    api = _Api()
    # The class read KAGGLE_CONFIG_DIR at import time; follow the current environment instead.
    config_file = kaggle_config_file()
    api.config_dir = str(config_file.parent)
    api.config = str(config_file)
    return api


def _network_reason(error: BaseException) -> str:
    text = str(error)
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "Temporary failure in name resolution" in text:
        return "DNS lookup failed"
    if "refused" in text.lower():
        return "connection refused"
    if "timed out" in text.lower() or "Timeout" in type(error).__name__:
        return "timed out"
    return "connection failed"


def _kaggle_failure(
    error: BaseException, dataset: str, credentials: _Credentials, endpoint: str
) -> IngestError:
    """One clear line for a failed Kaggle call; never echoes a credential."""
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code == 401:
            return IngestError(
                f"Kaggle rejected the credentials from {credentials.source} (HTTP 401); check the username "
                f"and key or create a new API token at {KAGGLE_TOKEN_URL}"
            )
        if code == 403:
            return IngestError(
                f"Kaggle refused access to {dataset} with the credentials from {credentials.source} "
                f"(HTTP 403); check them, and accept the dataset's terms on "
                f"https://www.kaggle.com/datasets/{dataset}"
            )
        if code == 404:
            return IngestError(
                f"Kaggle dataset {dataset} not found (HTTP 404); check the owner/slug given by --dataset or "
                "kaggle_dataset"
            )
        if code == 429:
            return IngestError("Kaggle is rate-limiting requests (HTTP 429); wait a few minutes, run again")
        detail = _redact(str(error), credentials.secrets).splitlines()[0] if str(error) else ""
        return IngestError(f"Kaggle API error for {dataset} (HTTP {code}: {detail}); try again later")
    if isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return IngestError(
            f"cannot reach the Kaggle API at {endpoint} ({_network_reason(error)}); check the network and "
            "proxy settings, or stage a local copy with 'xray ingest-folder'"
        )
    detail = _redact(f"{type(error).__name__}: {error}", credentials.secrets).splitlines()[0]
    return IngestError(f"Kaggle download of {dataset} failed ({detail}); run again to resume")


def _dataset_metadata(api: Any, owner: str, slug: str) -> dict[str, Any]:
    """Title, version and license from the API (GetDataset); empty where the client does not offer it."""
    try:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest
    except ImportError:  # an older client without the call
        return {}
    request = ApiGetDatasetRequest()
    request.owner_slug, request.dataset_slug = owner, slug
    with api.build_kaggle_client() as client:
        dataset = client.datasets.dataset_api_client.get_dataset(request)
    return {
        "title": getattr(dataset, "title", None) or None,
        "version": getattr(dataset, "current_version_number", None),
        "license": getattr(dataset, "license_name", None) or None,
    }


def _parse_dataset(ref: str) -> tuple[str, str, int | None]:
    parts = ref.strip().strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts) or (len(parts) == 3 and not parts[2].isdigit()):
        raise IngestError(f"invalid Kaggle dataset {ref!r}; expected owner/slug such as "
                          "paultimothymooney/chest-xray-pneumonia")
    return parts[0], parts[1], int(parts[2]) if len(parts) == 3 else None


def ingest_kaggle(
    spark: Any,
    config: XrayConfig,
    download_dir: str | Path | None = None,
    sample_per_class: int | None = None,
    splits: Sequence[str] = SPLITS,
    seed: int = 0,
    batch_files: int = 0,
    interval_seconds: float = 0.0,
) -> StagingReport:
    """Download ``config.kaggle_dataset`` with the kaggle client and stage its X-rays into landing.

    Credentials: ``KAGGLE_USERNAME``/``KAGGLE_KEY``, ``KAGGLE_API_TOKEN``, or ``kaggle.json`` in
    ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle`` (a warning is logged when that file is readable by others).
    The archive is kept in ``download_dir`` (default ``<lakehouse>/downloads``; an unchanged archive is
    not downloaded again), checked for unsafe members, and only the planned images are extracted, into a
    temporary folder under the lakehouse, before any file is placed in landing. ``sample_per_class``
    limits each split/LABEL to N random images (``seed``); ``splits`` picks splits; ``batch_files`` and
    ``interval_seconds`` drop files K at a time to simulate arrivals. Every failure (missing or rejected
    credentials, no network, unknown dataset, unsafe archive) raises a one-line `IngestError`. ``spark``
    may be None: a session is then obtained only to record the run, after the download succeeded.
    """
    splits = _check_options(sample_per_class, splits, batch_files, interval_seconds)
    dataset = config.kaggle_dataset
    owner, slug, version = _parse_dataset(dataset)
    credentials = _find_credentials()
    endpoint = _kaggle_endpoint()
    import requests

    api = _kaggle_api(credentials.secrets)
    downloads = Path(download_dir).expanduser() if download_dir else config.root / "downloads"
    try:
        with _quiet_stdout(credentials.secrets):
            try:
                api.authenticate()
            except SystemExit:
                # The client found credentials but they did not authenticate (e.g. an expired token).
                raise IngestError(
                    f"Kaggle did not accept the credentials from {credentials.source}; create a new API "
                    f"token at {KAGGLE_TOKEN_URL}"
                ) from None
            try:
                metadata = _dataset_metadata(api, owner, slug)
            except requests.HTTPError as error:
                if error.response is None or error.response.status_code in (401, 403, 404, 429):
                    raise
                log.warning("Kaggle metadata of %s unavailable (HTTP %s); recording the download without it",
                            dataset, error.response.status_code)
                metadata = {}
            downloads.mkdir(parents=True, exist_ok=True)
            log.info("downloading Kaggle dataset %s to %s", dataset, downloads)
            api.dataset_download_files(dataset, path=str(downloads), unzip=False,
                                       quiet=not sys.stderr.isatty())
    except IngestError:
        raise
    except Exception as error:  # noqa: BLE001 - every client failure becomes one line without secrets
        raise _kaggle_failure(error, dataset, credentials, endpoint) from None

    archive = downloads / f"{slug}.zip"
    if not archive.is_file():
        raise IngestError(f"Kaggle reported a download of {dataset} but {archive} is missing; run again")
    report = StagingReport(f"{owner}/{slug}", "kaggle", config.landing_dir, title=metadata.get("title"),
                           version=version or metadata.get("version"), license=metadata.get("license"))
    _stage_archive(config, archive, report, sample_per_class, splits, seed, batch_files, interval_seconds)
    _record(spark, config, report, _options(sample_per_class, splits, seed, batch_files, interval_seconds))
    log.info("%s", report.summary())
    return report
