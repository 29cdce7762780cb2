"""Private by default: everything under the lakehouse is readable by its owner only (or also its group).

X-ray bytes, the MLflow store and the lakehouse key are patient data. Two measures, both driven by
``lakehouse_permissions``:

* the process umask (077, or 027 for ``group``), set before the Spark JVM starts: the JVM (checkpoints),
  Spark's Python workers (bronze Parquet files written on executors), delta-rs, SQLite (``mlflow.db``)
  and the reports all create their files through it, so no writer needs its own ``chmod``;
* the lakehouse root (0700 / 0750) and ``_secrets`` (always 0700) are set when found more open, which
  also closes an existing lakehouse created with 755: nobody else can enter it, whatever the modes below.

Under spark-submit or on a cluster the JVM and the executors already run: their umask is the launching
environment's (see README, Privacy).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streaming.core.config import XrayConfig

__all__ = ["DIRECTORY_MODES", "SECRETS_MODE", "UMASKS", "apply_permissions", "secure_directory"]

log = logging.getLogger(__name__)

UMASKS = {"owner": 0o077, "group": 0o027}
DIRECTORY_MODES = {"owner": 0o700, "group": 0o750}
SECRETS_MODE = 0o700  # the key never needs to be read by the group: only the service writes path refs


def apply_permissions(config: XrayConfig) -> None:
    """Set the process umask for ``config.lakehouse_permissions`` and close the lakehouse root (and its
    ``_secrets``) when they exist and are more open than that. Call before the Spark JVM starts."""
    mode = config.lakehouse_permissions
    os.umask(UMASKS[mode])
    root = config.root
    if root.is_dir():
        secure_directory(root, DIRECTORY_MODES[mode], f"lakehouse root (lakehouse_permissions = {mode})")
        secrets = root / "_secrets"
        if secrets.is_dir():
            secure_directory(secrets, SECRETS_MODE, "lakehouse key folder")


def secure_directory(path: Path, mode: int, what: str) -> None:
    """Create ``path`` with ``mode`` or set an existing one to it when its mode differs (one INFO line).

    A filesystem that refuses ``chmod`` (some FUSE mounts, e.g. cloud volumes) keeps its own rules: logged
    once at WARNING, not an error.
    """
    try:
        if not path.exists():
            try:
                path.mkdir(parents=True, mode=mode)
            except FileExistsError:  # made by another process or thread since the check: set its mode below
                pass
            else:
                os.chmod(path, mode)  # mkdir's mode passes through the umask; this is exact
                return
        current = stat.S_IMODE(path.stat().st_mode)
        if current != mode:
            os.chmod(path, mode)
            log.info("%s %s: permissions changed from %04o to %04o", what, path, current, mode)
    except PermissionError as error:
        log.warning("cannot set permissions of %s %s to %04o (%s); check them by hand", what, path, mode,
                    error.strerror)
