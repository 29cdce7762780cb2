"""The Spark session factory: reuse an active session (Databricks, spark-submit), else build one."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from streaming.core.config import XrayConfig, load_config
from streaming.core.errors import JavaMissingError
from streaming.core.permissions import UMASKS, apply_permissions
from streaming.lakehouse.deltajars import CATALOG as DELTA_CATALOG
from streaming.lakehouse.deltajars import EXTENSIONS as DELTA_EXTENSIONS
from streaming.lakehouse.deltajars import delta_jars
from streaming.lakehouse.jvmcache import class_data_options

log = logging.getLogger(__name__)

DEFAULT_MASTER = XrayConfig.spark_master
JAVA_HELP = (
    "Spark needs Java 17 or newer: on Debian/Ubuntu run 'sudo apt-get install -y openjdk-17-jre-headless' "
    "(or ./setup.sh), on macOS 'brew install openjdk@17', elsewhere install a JDK 17+ and set JAVA_HOME"
)


def java_binary() -> str | None:
    """The ``java`` Spark would start (``JAVA_HOME``'s, else the one on PATH), or None."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    return java if java and os.path.exists(java) else None


def java_major_version() -> int | None:
    """The major version of the Java runtime Spark would start, or None when there is none."""
    java = java_binary()
    if java is None:
        return None
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java() -> None:
    """Raise `JavaMissingError` with install instructions when no Java 17+ is available."""
    major = java_major_version()
    if major is None:
        raise JavaMissingError(f"no Java runtime found. {JAVA_HELP}")
    if major < 17:
        raise JavaMissingError(f"Java {major} found. {JAVA_HELP}")


WORKER_DAEMON = "streaming.lakehouse.workerdaemon"
LOG4J2_FILE = Path(__file__).with_name("log4j2.properties")


def spark_is_quiet(config: XrayConfig) -> bool:
    """Spark's own log is errors only unless `--log-level DEBUG` (then its default profile and warnings)."""
    return config.log_level.upper() != "DEBUG"


def spark_error_log(config: XrayConfig) -> Path:
    """Where Spark's own ERROR lines go while it is quiet (`log4j2.properties`): under the lakehouse."""
    return config.root / "logs" / "spark-errors.log"


def _driver_java_options(config: XrayConfig) -> str:
    # The JVM only plans and moves small results here (Python does the image work): its C2 compiler
    # cost up to a core during the first minutes for no gain; C1 alone starts the service faster.
    options = ["-XX:TieredStopAtLevel=1", f"-Dderby.system.home={config.root / 'derby'}"]
    java = java_binary()
    if config.jvm_class_cache and java:
        options += class_data_options(java)  # Spark's classes mapped, not loaded (`jvmcache`)
    if spark_is_quiet(config) and LOG4J2_FILE.is_file():
        # Read before Spark logs its first line; a URI has no spaces for Spark to split on.
        options.append(f"-Dlog4j2.configurationFile={LOG4J2_FILE.resolve().as_uri()}")
        options.append(f"-Dxray.spark.log={spark_error_log(config)}")  # Spark's errors: a file, not the terminal
    return " ".join(options)


def _local_builder(config: XrayConfig) -> SparkSession.Builder:
    builder = SparkSession.builder
    # Under spark-submit the master comes from its --master; only an explicitly configured one overrides it.
    if not os.environ.get("PYSPARK_GATEWAY_PORT") or config.spark_master != DEFAULT_MASTER:
        builder = builder.master(config.spark_master)
    builder = (
        builder
        .appName("xray-lakehouse")
        .config("spark.ui.enabled", str(config.spark_ui).lower())
        .config("spark.sql.shuffle.partitions", str(config.shuffle_partitions))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
        # Each micro-batch would otherwise start a Spark job just to list a few landing files.
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "100000")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        # The checkpoint policy (README: Maintenance): offsets/ and commits/ keep the last 100 batches, so a
        # checkpoint stays a few hundred small files however long the stream runs, and `xray recover` can
        # still rewind up to 100 batches after a lost Delta commit.
        .config("spark.sql.streaming.minBatchesToRetain", "100")
        .config("spark.ui.showConsoleProgress", "false")
        # Jobs given a pool (the periodic retrain inside `xray stream`) share the cores with the stream's
        # micro-batches (the default pool) rather than queue them behind; one pool alone runs as FIFO did.
        .config("spark.scheduler.mode", "FAIR")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", os.environ.get("XRAY_DRIVER_MEMORY", "2g"))
        .config("spark.sql.warehouse.dir", str(config.root / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions", _driver_java_options(config))
    )
    if sys.platform.startswith("linux"):
        # Workers forked with the executors' modules already imported (`workerdaemon`); Linux only: on macOS
        # native libraries loaded before a fork (Accelerate, the Objective-C runtime) are not fork-safe.
        builder = builder.config("spark.python.daemon.module", WORKER_DAEMON)
    # Hadoop's local filesystem (checkpoints) sets modes itself from its own umask (022 by default),
    # ignoring the process umask: give it the lakehouse's.
    builder = builder.config("spark.hadoop.fs.permissions.umask-mode",
                             f"{UMASKS[config.lakehouse_permissions]:03o}")
    for key, value in config.spark_conf.items():
        builder = builder.config(key, value)
    return _with_delta_jars(builder, config)


SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"


def _with_delta_jars(builder: SparkSession.Builder, config: XrayConfig) -> SparkSession.Builder:
    """Load Delta Lake's jars from the user's cache (`deltajars`, fetched by ./setup.sh) with its SQL
    extension and catalog when the engine is delta-spark (``auto`` is delta-rs in a session built here:
    `enginechoice.engine_choice`, and a JVM without them starts faster)."""
    if config.delta_engine != "delta-spark":
        return builder
    jars = delta_jars().files()
    if not jars:
        return builder
    def joined(key: str, *first: str) -> str:  # the user's own values (spark_conf) are kept after ours
        return ",".join([*first, *(v for v in config.spark_conf.get(key, "").split(",") if v and v not in first)])

    return (builder.config("spark.jars", joined("spark.jars", *(str(j) for j in jars)))
            .config("spark.sql.extensions", joined("spark.sql.extensions", DELTA_EXTENSIONS))
            .config("spark.sql.catalog.spark_catalog",
                    config.spark_conf.get("spark.sql.catalog.spark_catalog", DELTA_CATALOG))
            .config(SNAPSHOT_PARTITIONS, config.spark_conf.get(SNAPSHOT_PARTITIONS, _snapshot_partitions(config))))


def _snapshot_partitions(config: XrayConfig) -> str:
    # Delta rebuilds a table's state (to read the txn of an idempotent write, every micro-batch) in 50
    # partitions by default: 50 tasks per small commit took 15-30 s on the 2-core machine under load; one
    # partition in local mode took 1.7-1.9 s, four 2.5-3.2 s (README: Two Delta engines). Under spark-submit
    # (its master is kept, `_local_builder`) or on a cluster master: the session's shuffle parallelism.
    local = config.spark_master.startswith("local") and not os.environ.get("PYSPARK_GATEWAY_PORT")
    return "1" if local else str(config.shuffle_partitions)


_owned: list[SparkSession] = []  # sessions this process built (not Databricks'/a caller's)


def stop_owned_sessions() -> None:
    """Stop the sessions `get_spark` built, so a command ends with Spark shut down in order (its
    callback threads and Python workers) rather than torn down at interpreter exit."""
    while _owned:
        session = _owned.pop()
        try:
            session.stop()
        except Exception:  # ending anyway; the JVM exits with this process
            pass


def _launch_jvm_apart() -> None:
    """Start the driver JVM pyspark launches in its own process group, ignoring SIGTERM (pyspark already
    makes it ignore SIGINT). A stop signal is the Python driver's to handle: it finishes the micro-batch and
    stops the queries, which needs the JVM and its Python workers alive. SIGTERM sent to the stream's whole
    process group (``kill -TERM -PGID``, a supervisor) would otherwise end the JVM at once: the stop failed
    within milliseconds with a py4j traceback. The JVM still ends with the driver (its stdin closes), and
    the watchdog's `end_spark_jvm` uses SIGKILL."""
    from pyspark import java_gateway

    if getattr(java_gateway.Popen, "xray_apart", False):
        return

    def popen(*args, **kwargs):  # subprocess.Popen's
        inner = kwargs.get("preexec_fn")

        def preexec() -> None:  # in the child, before exec: kept by the JVM (an ignored signal stays ignored)
            if inner is not None:
                inner()
            os.setpgrp()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        kwargs["preexec_fn"] = preexec
        return subprocess.Popen(*args, **kwargs)

    popen.xray_apart = True
    java_gateway.Popen = popen


def get_spark(config: XrayConfig | None = None) -> SparkSession:
    """Return the active SparkSession, or build a local one from the configuration.

    ``config`` None means configuration from file, environment and defaults. The ``deltars`` data source
    is registered on the session either way.
    """
    config = config or load_config()
    # Before the JVM starts: it, its Python workers and every other writer inherit the umask.
    apply_permissions(config)
    active = SparkSession.getActiveSession()
    if active is None:
        # Python workers must run this interpreter (a venv's `xray` works without activating the venv).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        if not os.environ.get("SPARK_REMOTE"):
            check_java()
        config.root.mkdir(parents=True, exist_ok=True)
        if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
            # A Databricks job without an active session: the runtime's own settings apply.
            active = SparkSession.builder.getOrCreate()
        else:
            _launch_jvm_apart()
            active = _local_builder(config).getOrCreate()
            _owned.append(active)
        active.sparkContext.setLogLevel("ERROR" if spark_is_quiet(config) else "WARN")
    register_data_sources(active)
    return active


def register_data_sources(spark: SparkSession) -> None:
    """Register the ``deltars`` and ``xray_landing`` Python data sources on a session (idempotent)."""
    from streaming.lakehouse.deltars import DeltaRsDataSource
    from streaming.landing.source import LandingDataSource

    spark.dataSource.register(DeltaRsDataSource)
    spark.dataSource.register(LandingDataSource)
