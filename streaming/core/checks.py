"""Checks of paths a user gives, made before Spark starts: each failure is one line saying what to do.

A mistake (a lakehouse under a file or a read-only mount, a folder that does not exist) must be answered
in a second, not after the 30-50 s a JVM takes to start, and never with a traceback.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from streaming.core.errors import ConfigError, InputPathError

__all__ = ["check_folder", "check_input_path", "check_lakehouse_writable", "check_landing"]

LAKEHOUSE_HINT = "choose a writable folder with --lakehouse or XRAY_LAKEHOUSE"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or "/")


def check_lakehouse_writable(root: Path, create: bool = True) -> None:
    """Raise `ConfigError` unless ``root`` is (or, with ``create``, can be made) a folder this process can
    write. ``create`` makes the folder (mode from the process umask, see `permissions`)."""
    root = Path(root)
    if not root.exists():
        existing = _nearest_existing(root)
        if not existing.is_dir():
            raise ConfigError(f"cannot create the lakehouse {root}: {existing} is a file, not a folder; "
                              f"{LAKEHOUSE_HINT}")
        if not create:
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or str(error)
            if error.errno == errno.ENOENT:
                reason = "that filesystem does not allow new folders"
            raise ConfigError(f"cannot create the lakehouse {root} under {existing} ({reason}); "
                              f"{LAKEHOUSE_HINT}") from None
    if not root.is_dir():
        raise ConfigError(f"the lakehouse {root} is a file, not a folder; {LAKEHOUSE_HINT}")
    if not create:
        return
    try:
        # A real write: os.access says yes to root on a read-only mount and no to some ACL'd folders.
        with tempfile.TemporaryFile(dir=root, prefix=".xray-write-check-"):
            pass
    except OSError as error:
        raise ConfigError(f"cannot write in the lakehouse {root} ({error.strerror or error}); "
                          f"{LAKEHOUSE_HINT}") from None


def check_input_path(path: str | Path, what: str, hint: str, folder_only: bool = False) -> Path:
    """The path ``what`` (e.g. "source folder") must exist and be readable; `InputPathError` with ``hint``
    (what to pass instead) otherwise. With ``folder_only`` it must be a folder."""
    given = Path(path).expanduser()
    if not given.exists():
        raise InputPathError(f"{what} {given} does not exist; {hint}")
    if folder_only and not given.is_dir():
        raise InputPathError(f"{what} {given} is a file, not a folder; {hint}")
    if not os.access(given, os.R_OK | (os.X_OK if given.is_dir() else 0)):
        raise InputPathError(f"{what} {given} is not readable by this user; fix its permissions or {hint}")
    return given


def check_folder(path: str | Path, what: str, hint: str) -> Path:
    """`check_input_path` for a folder."""
    return check_input_path(path, what, hint, folder_only=True)


def check_landing(landing: Path, write: bool) -> None:
    """The landing folder (``<lakehouse>/landing``) must be a folder this process can list and, with
    ``write``, write in; one that does not exist yet is made later. Raises `InputPathError`.

    Tried for real (a listing, a temporary file), not with ``os.access``: as root it says yes to a folder a
    root without file-access capabilities (a container's) cannot read. Checked before the stream starts, so
    a user's mistake is one line, not a traceback and a `stream_stopped` alert.
    """
    landing = Path(landing)
    if os.path.lexists(landing) and not landing.is_dir():
        raise InputPathError(f"landing {landing} is a file, not a folder: images are dropped into that folder; "
                             f"move the file away (mv {landing} {landing}.old) and run again")
    if not landing.exists():
        return
    try:
        with os.scandir(landing) as entries:
            next(entries, None)
    except OSError as error:
        raise InputPathError(f"cannot read landing {landing} ({error.strerror or error}): the stream could "
                             "not see a file in it; give this user read access (chmod u+rx, or run as its "
                             "owner)") from None
    if not write:
        return
    try:
        with tempfile.TemporaryFile(dir=landing, prefix=".xray-write-check-"):
            pass
    except OSError as error:
        raise InputPathError(f"cannot write in landing {landing} ({error.strerror or error}): files are staged "
                             "there; give this user write access (chmod u+w, or run as its owner)") from None
