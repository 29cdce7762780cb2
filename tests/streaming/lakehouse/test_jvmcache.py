"""The driver's class-data archive: made by a first start, mapped by later ones, a bad dump never used."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from streaming.lakehouse.jvmcache import archive_key, class_data_options
from streaming.lakehouse.session import java_binary

JAVA = java_binary()
pytestmark = pytest.mark.skipif(JAVA is None, reason="needs a Java runtime")


def _aged(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dump(path):
    """A real archive, of a JVM that only printed its version (about 100 KB)."""
    subprocess.run([JAVA, f"-XX:ArchiveClassesAtExit={path}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off", "-version"],
                   check=True, capture_output=True)
    path.chmod(0o600)


def test_first_start_dumps_then_later_ones_map_the_archive(tmp_path):
    final = tmp_path / f"spark-{archive_key(JAVA)}.jsa"
    options = class_data_options(JAVA, tmp_path)
    assert options[0] == f"-XX:ArchiveClassesAtExit={final}.{os.getpid()}"
    final.write_bytes(b"an archive")  # as if adopted
    assert class_data_options(JAVA, tmp_path)[0] == f"-XX:SharedArchiveFile={final}"


def test_a_truncated_dump_is_deleted_and_made_again_and_a_fresh_one_waited_for(tmp_path):
    final = tmp_path / f"spark-{archive_key(JAVA)}.jsa"
    part = tmp_path / (final.name + ".12345")
    _dump(part)
    part.write_bytes(part.read_bytes()[:4096])  # killed half-way: a JVM would crash on it
    assert class_data_options(JAVA, tmp_path) == []  # still being written, perhaps: neither used nor dumped
    _aged(part)
    options = class_data_options(JAVA, tmp_path)
    assert not part.exists() and not final.exists()
    assert options[0].startswith("-XX:ArchiveClassesAtExit=")


def test_a_complete_dump_is_adopted(tmp_path):
    # A first start's dump: a real JVM writes it at exit (about 150 MB; only a small program here).
    final = tmp_path / f"spark-{archive_key(JAVA)}.jsa"
    part = tmp_path / (final.name + ".1")
    _dump(part)
    _aged(part)
    assert class_data_options(JAVA, tmp_path)[0] == f"-XX:SharedArchiveFile={final}"
    assert final.is_file() and not part.exists()


def test_archives_of_another_jvm_or_spark_are_deleted(tmp_path):
    old = tmp_path / "spark-0000000000000000.jsa"
    old.write_bytes(b"old")
    _aged(old)
    class_data_options(JAVA, tmp_path)
    assert not old.exists()


def test_a_folder_with_spaces_gets_no_option(tmp_path):
    # Spark splits the driver's Java options on spaces.
    assert class_data_options(JAVA, tmp_path / "with space") == []
