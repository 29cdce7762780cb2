"""Shared fixtures: one SparkSession for the whole run (UI off, few shuffle partitions, Delta Lake's jars
loaded), tmp lakehouses.

Tests marked ``engine_dependent`` (a module's ``pytestmark``) run twice, once per Delta engine: the
``delta_engine`` fixture is parametrized over ``delta-rs`` and ``delta-spark`` and the ``config`` fixture
pins it. The one session serves both (the format is chosen per Lakehouse); ``auto`` is delta-rs in it, as
in any session the service builds. Other tests use delta-rs. Under
CI (``CI=true``) a native engine that cannot load fails the native half instead of skipping it.
"""

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
# Commands a test runs (in-process or as `xray` processes) use delta-rs unless the test's `delta_engine`
# fixture says otherwise (it sets this variable for the test).
os.environ["XRAY_DELTA_ENGINE"] = "delta-rs"


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The one SparkSession of the test run, built by the project's own factory."""
    from streaming.core.config import load_config
    from streaming.lakehouse.session import get_spark

    root = tmp_path_factory.mktemp("spark-session")
    config = load_config(
        environ={},
        delta_engine="delta-spark",  # loads Delta Lake's jars when ./setup.sh fetched them
        lakehouse=str(root),
        spark_master="local[2]",
        shuffle_partitions=2,
        jvm_class_cache=False,
        spark_conf={"spark.ui.showConsoleProgress": "false", "spark.driver.memory": "1g"},
    )
    session = get_spark(config)
    yield session
    session.stop()


ENGINES = ("delta-rs", "delta-spark")


def pytest_generate_tests(metafunc):
    if "delta_engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("engine_dependent"):
        metafunc.parametrize("delta_engine", ENGINES, indirect=True)


@pytest.fixture
def delta_engine(request, monkeypatch):
    """The engine a test's lakehouse uses: both for ``engine_dependent`` tests, else delta-rs."""
    engine = getattr(request, "param", "delta-rs")
    monkeypatch.setenv("XRAY_DELTA_ENGINE", engine)
    if engine == "delta-spark":
        from streaming.lakehouse.enginechoice import native_delta_available

        if not native_delta_available(request.getfixturevalue("spark")):
            from streaming.lakehouse.deltajars import delta_jars

            reason = f"the native Delta engine does not load: {delta_jars().how_to_add()}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    return engine


@pytest.fixture
def config(tmp_path, delta_engine):
    """A configuration whose lakehouse is a fresh temporary folder, on the test's Delta engine."""
    from streaming.core.config import load_config

    return load_config(environ={}, lakehouse=str(tmp_path / "lakehouse"), spark_master="local[2]",
                       shuffle_partitions=2, trigger_seconds=0.5, delta_engine=delta_engine)


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
