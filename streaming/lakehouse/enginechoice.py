"""Which Delta engine a lakehouse uses, and why: the native ``delta`` format (Delta Lake's JVM engine) or
``deltars`` (delta-rs behind the service's Python data source). ``engine.Lakehouse`` asks here once;
``xray --version`` says the same without starting Spark.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import SparkSession

from streaming.core.config import XrayConfig
from streaming.core.errors import ConfigError
from streaming.lakehouse.deltajars import delta_jars

__all__ = ["DELTA_RS_FORMAT", "NATIVE_FORMAT", "engine_choice", "expected_engine", "native_delta_available",
           "native_session", "resolve_format"]

NATIVE_FORMAT = "delta"
DELTA_RS_FORMAT = "deltars"


def native_delta_available(spark: SparkSession) -> bool:
    """True when the Delta Lake JVM classes are on the session's classpath."""
    try:
        jvm = spark._jvm  # type: ignore[attr-defined]
        if jvm is None:
            return False
        # Spark's class loader: it holds spark.jars (java.lang.Class.forName from Py4J sees only the JVM's
        # own classpath, where jars added by spark.jars or --packages are not).
        jvm.org.apache.spark.util.Utils.classForName("io.delta.tables.DeltaTable", True, False)
        return True
    except Exception:  # Spark Connect has no JVM; a missing class raises a Py4J error
        return False


def resolve_format(spark: SparkSession, config: XrayConfig) -> str:
    """The Spark format for Delta tables under this configuration."""
    return engine_choice(spark, config)[0]


def engine_choice(spark: SparkSession | None, config: XrayConfig) -> tuple[str, str]:
    """(Spark format, why). ``delta-rs`` and ``delta-spark`` pin the engine. ``auto`` is the native engine
    where the runtime brings Delta Lake (Databricks, spark-submit with the jars), and delta-rs in a session
    this service builds itself: there delta-rs measured many times faster per commit (README: Two Delta
    engines), so the cached jars (`deltajars`) are loaded only for ``delta-spark``."""
    if config.delta_engine == "delta-rs":
        return DELTA_RS_FORMAT, "delta_engine = delta-rs"
    available = spark is not None and native_delta_available(spark)
    if config.delta_engine == "delta-spark":
        if not available:
            raise ConfigError(
                f"delta_engine is delta-spark but the Delta Lake jars are not on Spark's classpath: "
                f"{delta_jars().how_to_add()}; or use delta_engine = auto (delta-rs until then)")
        return NATIVE_FORMAT, "delta_engine = delta-spark, Delta Lake's jars are loaded"
    if available and not _jars_from_cache(spark):
        return NATIVE_FORMAT, "delta_engine = auto, the Spark runtime brings Delta Lake"
    return DELTA_RS_FORMAT, ("delta_engine = auto, Spark session built here: delta-rs (faster here; "
                             "--delta-engine delta-spark for Delta Lake's own engine)")


def _jars_from_cache(spark: SparkSession) -> bool:
    """True when Delta Lake's classes came from the user's jar cache, i.e. this service loaded them."""
    try:
        return str(delta_jars().folder.parent) in (spark.conf.get("spark.jars", "") or "")
    except Exception:  # a runtime that hides the setting: not ours
        return False


def expected_engine(config: XrayConfig) -> str:
    """One line for ``xray --version``: the engine a session built here would use, and why, without
    starting Spark (a Databricks or spark-submit session brings its own classpath: it is checked there)."""
    jars = delta_jars()
    if config.delta_engine == "delta-rs":
        return "delta engine: delta-rs (delta_engine = delta-rs)"
    if config.delta_engine == "delta-spark":
        if jars.files():
            return (f"delta engine: delta-spark (delta_engine = delta-spark; Delta Lake {jars.version} jars "
                    f"for Spark {jars.spark} in {jars.folder})")
        return f"delta engine: delta-spark requested but no Delta Lake jars: {jars.how_to_add()}"
    cached = (f"Delta Lake {jars.version} jars cached in {jars.folder}: --delta-engine delta-spark uses them"
              if jars.files() else f"no Delta Lake jars: {jars.how_to_add()}")
    return (f"delta engine: delta-rs (delta_engine = auto: delta-rs in a session built here, native Delta "
            f"where the Spark runtime brings it; {cached})")


def native_session(config: XrayConfig, start: Callable[[XrayConfig], SparkSession]) -> SparkSession | None:
    """A session (from ``start``) when this configuration pins the native engine, else None: commands
    that do their work with delta-rs alone start no Spark otherwise."""
    if config.delta_engine != "delta-spark":
        return None
    spark = start(config)
    return spark if resolve_format(spark, config) == NATIVE_FORMAT else None
