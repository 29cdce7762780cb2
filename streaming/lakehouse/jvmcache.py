"""A JVM class-data archive (AppCDS) for the driver: Spark's classes mapped from a file rather than loaded,
verified and parsed at every start (``jvm_class_cache``, on by default).

Measured on this 2-core machine: the session start and first query take 35-45 % less time with the
archive. The first session started without one records the classes it loaded and writes the archive when
its JVM exits (``-XX:ArchiveClassesAtExit``, about 150 MB, a few seconds after the process ends); later
sessions map it (``-XX:SharedArchiveFile``).

The archive lives in the user's cache folder (``$XDG_CACHE_HOME/xray-lakehouse``, else
``~/.cache/xray-lakehouse``): it holds class metadata of the JDK and Spark, nothing of a lakehouse. Its
name carries a key of the JVM, the pyspark version and the jar set, so an upgrade of either makes a new
one. A JVM crashes on a truncated archive (a dump killed half-way) instead of ignoring it, so a dump is
written under a temporary name and adopted only once a ``java -version`` with it succeeds; a dump that
fails that check is deleted and made again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

__all__ = ["archive_key", "cache_folder", "class_data_options"]

# A dump whose file changed this recently may still be being written.
DUMP_QUIET_SECONDS = 30.0
DYNAMIC_ARCHIVE_MAGIC = (0xF00BABA8).to_bytes(4, "little")  # HotSpot's CDS_DYNAMIC_ARCHIVE_MAGIC
# The JVM says nothing about the archive (a missing or mismatched one is silently not used).
QUIET = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xray-lakehouse"


def archive_key(java: str) -> str:
    """What an archive is only valid for: the JVM (its binary and libjvm), the pyspark version and the
    classpath's jars (names and sizes)."""
    import pyspark

    java = os.path.realpath(java)
    home = Path(java).parent.parent
    parts = [java, pyspark.__version__]
    for library in (home / "lib" / "server" / "libjvm.so", Path(java)):
        try:
            stat = library.stat()
            parts.append(f"{library.name}:{stat.st_size}:{int(stat.st_mtime)}")
        except OSError:
            pass
    jars = Path(pyspark.__file__).parent / "jars"
    try:
        parts += sorted(f"{entry.name}:{entry.stat().st_size}" for entry in os.scandir(jars))
    except OSError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def class_data_options(java: str, folder: Path | None = None) -> list[str]:
    """The driver JVM's options: map the archive when there is a good one, else write one at exit (unless
    another process is writing one: then none). Archives of other keys are deleted. Never raises: without
    a usable cache folder, no options."""
    try:
        folder = folder or cache_folder()
        if any(c.isspace() for c in str(folder)):
            return []  # Spark splits the driver's Java options on spaces
        final = folder / f"spark-{archive_key(java)}.jsa"
        others = [p for p in folder.glob("spark-*.jsa*") if p != final] if folder.is_dir() else []
        for other in others:
            if not other.name.startswith(final.name) and not _being_written(other):
                other.unlink(missing_ok=True)  # an older JVM's or Spark's
        parts = [p for p in others if p.name.startswith(final.name + ".") and p.exists()]
        if final.is_file():
            for part in parts:  # a second dump of the same classes
                if not _being_written(part):
                    part.unlink(missing_ok=True)
            return [f"-XX:SharedArchiveFile={final}", *QUIET]
        for part in parts:
            if _being_written(part):
                return []
            if _loads(java, part):
                os.replace(part, final)
                return [f"-XX:SharedArchiveFile={final}", *QUIET]
            part.unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        return [f"-XX:ArchiveClassesAtExit={final}.{os.getpid()}", *QUIET]
    except OSError:
        return []


def _being_written(path: Path) -> bool:
    # The JVM writes its dump at exit, after the Python process that started it has gone: a file that
    # changed recently may still be growing.
    try:
        return time.time() - path.stat().st_mtime < DUMP_QUIET_SECONDS
    except OSError:
        return False


def _loads(java: str, archive: Path) -> bool:
    """Whether the file is a dynamic archive (its magic number) a JVM starts with (a truncated one makes it
    crash; another file would be ignored, and never replaced)."""
    try:
        with open(archive, "rb") as file:
            if file.read(4) != DYNAMIC_ARCHIVE_MAGIC:
                return False
        # A crash here writes no hs_err file or core dump.
        result = subprocess.run([java, f"-XX:SharedArchiveFile={archive}", *QUIET, f"-XX:ErrorFile={os.devnull}",
                                 "-XX:-CreateCoredumpOnCrash", "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0
