"""Zip and tar archives of X-rays, read and extracted safely: every member is checked before anything is
written, so a malicious archive (``..``, absolute paths, drive letters, links, devices) is refused whole and
leaves the extraction folder untouched.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from streaming.core.dicomfile import DICOM_PREAMBLE_LENGTH, has_dicom_preamble
from streaming.core.errors import IngestError
from streaming.core.names import DICOM_SUFFIXES, is_image_name, may_be_dicom_name
from streaming.core.progress import progress
from streaming.ingest.labels import read_sop_uid
from streaming.ingest.plan import SourceImage, in_ignored_folder

__all__ = ["archive_images", "archive_sop_uids", "open_member", "safe_extract"]

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
    absolute path, drive letter, link, device). Zip members carry their CRC as fingerprint. A member with an
    extensionless or UID name (a PACS export) is an image when its first 132 bytes are DICOM's preamble.
    """
    archive = Path(archive)
    images = []
    with _open_archive(archive) as handle:
        for name, size, member in _checked_members(archive, handle):
            parts = PurePosixPath(name).parts
            if not parts or in_ignored_folder(parts[:-1]):
                continue
            if is_image_name(parts[-1]):
                dicom = parts[-1].lower().endswith(DICOM_SUFFIXES)
            elif may_be_dicom_name(parts[-1]) and has_dicom_preamble(_member_head(archive, handle, member)):
                dicom = True
            else:
                continue
            fingerprint = f"{member.CRC:08x}:{size}" if isinstance(member, zipfile.ZipInfo) else None
            images.append(SourceImage(name, size, fingerprint, dicom=dicom))
    return images


def archive_sop_uids(archive: str | Path, images: Iterable[SourceImage]) -> dict[str, str]:
    """The SOP Instance UID of each DICOM image of ``archive`` that has one, by member name (headers only:
    pydicom stops before the pixel data)."""
    archive = Path(archive)
    wanted = {image.source for image in images}
    uids = {}
    with _open_archive(archive) as handle:
        for name, _size, member in _checked_members(archive, handle):
            if name in wanted:
                with open_member(archive, handle, member) as content:
                    uid = read_sop_uid(content)
                if uid:
                    uids[name] = uid
    return uids


def open_member(archive: Path, handle: zipfile.ZipFile | tarfile.TarFile, member: Any) -> IO[bytes]:
    """A member's content as a (seekable) binary file; `IngestError` when the archive is damaged there."""
    try:
        opened = handle.open(member) if isinstance(handle, zipfile.ZipFile) else handle.extractfile(member)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as error:
        raise IngestError(f"archive {archive.name} is damaged ({error}); download it again") from None
    if opened is None:  # tar: not a regular file (already refused by _checked_members)
        raise IngestError(f"archive {archive.name} has a member that is not a file; download it again")
    return opened


def _member_head(archive: Path, handle: zipfile.ZipFile | tarfile.TarFile, member: Any) -> bytes:
    """The first bytes of a member: enough to tell DICOM (only those are decompressed, not the member)."""
    with open_member(archive, handle, member) as content:
        try:
            return content.read(DICOM_PREAMBLE_LENGTH)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
            raise IngestError(f"archive {archive.name} is damaged ({error}); download it again") from None


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
        with progress(total, f"extract {archive.name}", unit="B") as bar:
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
