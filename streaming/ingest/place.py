"""Atomic placement into landing: a file appears under its final name complete or not at all.

The bytes go to a hidden temporary name in the final folder (which the landing file source ignores), are
flushed to disk, then linked to the final name in one step. Used by staging and by the inbox watcher.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from streaming.core.errors import IngestError
from streaming.core.paths import parse_xray_path

__all__ = ["place_file"]

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
