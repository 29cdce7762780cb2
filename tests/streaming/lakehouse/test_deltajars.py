"""The Delta Lake jars of the native engine: which ones match the installed packages, when a cached folder
counts, which of the fetched jars are kept."""

from __future__ import annotations

from importlib import metadata

import pyspark

from streaming.lakehouse import deltajars
from streaming.lakehouse.deltajars import COMPLETE, delta_jars


def test_the_jars_match_the_installed_delta_spark_and_spark():
    jars = delta_jars()
    spark = ".".join(pyspark.__version__.split(".")[:2])
    assert jars.version == metadata.version("delta-spark")
    assert jars.coordinates == f"io.delta:delta-spark_{spark}_2.13:{jars.version}"
    assert jars.folder.name == f"delta-{jars.version}-spark-{spark}"


def test_a_folder_counts_only_once_complete(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    jars = delta_jars()
    assert jars.files() == [] and jars.folder.is_relative_to(tmp_path)
    jars.folder.mkdir(parents=True)
    (jars.folder / "delta-storage-4.4.0.jar").write_bytes(b"")
    assert jars.files() == []  # a fetch killed before its marker
    (jars.folder / COMPLETE).write_text("")
    assert [p.name for p in jars.files()] == ["delta-storage-4.4.0.jar"]
    available, line = deltajars.fetch()
    assert available and line.startswith(f"Delta Lake jars {jars.version} for Spark {jars.spark} already in")


def test_jars_spark_ships_are_not_kept():
    assert deltajars._artifact("jackson-core-2.13.5.jar") == "jackson-core"
    assert deltajars._artifact("delta-spark_4.2_2.13-4.4.0.jar") == "delta-spark_4.2_2.13"
    assert deltajars._artifact("zstd-jni-1.5.7-3.jar") == "zstd-jni"
    shipped = deltajars._spark_artifacts()
    assert {"scala-library", "jackson-core", "hadoop-client-api"} <= shipped
    assert "delta-storage" not in shipped


def test_without_delta_spark_the_line_says_how_to_add_it():
    jars = deltajars.DeltaJars(None, "4.2")
    assert jars.files() == []
    assert "pip install delta-spark" in jars.how_to_add()
