"""Shared fixtures: one SparkSession for the whole run (UI off, few shuffle partitions), tmp lakehouses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# Tests never read the developer's own settings.
for _name in [n for n in os.environ if n.startswith("XRAY_")]:
    del os.environ[_name]
# No JVM of the suite maps or writes the user's class-data archive (`streaming.lakehouse.jvmcache`, tested
# with its own folders): on a machine without one, every JVM started before the first dump was adopted
# would write 150 MB at its exit, holding its output pipe open for 15 s or more after the process ended.
os.environ["XRAY_JVM_CLASS_CACHE"] = "false"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one SparkSession of the test run, built by the project's own factory."""
    from streaming.core.config import load_config
    from streaming.lakehouse.session import get_spark

    root = tmp_path_factory.mktemp("spark-session")
    config = load_config(
        environ={},
        lakehouse=str(root),
        spark_master="local[2]",
        shuffle_partitions=2,
        jvm_class_cache=False,
        spark_conf={"spark.ui.showConsoleProgress": "false", "spark.driver.memory": "1g"},
    )
    session = get_spark(config)
    yield session
    session.stop()


@pytest.fixture
def config(tmp_path):
    """A configuration whose lakehouse is a fresh temporary folder."""
    from streaming.core.config import load_config

    return load_config(environ={}, lakehouse=str(tmp_path / "lakehouse"), spark_master="local[2]",
                       shuffle_partitions=2, trigger_seconds=0.5)


@pytest.fixture
def lakehouse(spark, config):
    """A Lakehouse over the temporary folder, all tables created."""
    from streaming.lakehouse.engine import Lakehouse

    house = Lakehouse(spark, config)
    house.ensure_tables()
    return house


def pytest_report_header(config):
    return f"xray-lakehouse tests; python {sys.executable}; cwd {Path.cwd()}"


@pytest.fixture(autouse=True)
def _keep_the_shared_session(monkeypatch):
    """`xray` commands stop the Spark sessions they built when they finish; in tests the one session of the
    run is shared (the `spark` fixture stops it at the end), so a command called in-process must leave it."""
    monkeypatch.setattr("streaming.lakehouse.session.stop_owned_sessions", lambda: None)
