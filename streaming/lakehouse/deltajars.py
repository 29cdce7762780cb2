"""Delta Lake's JVM jars for the native ``delta`` engine: which ones match the installed delta-spark and
pyspark, where they are kept, and fetching them once (``./setup.sh``) so every later session is offline-safe.

The jars live in the user's cache (``$XDG_CACHE_HOME/xray-lakehouse/jars/delta-<v>-spark-<m.n>``, else
under ``~/.cache``), outside any virtualenv: every install of the package on the machine finds them. A
folder counts only once its ``COMPLETE`` marker exists (written last), so a fetch killed half-way leaves
nothing that a session would load. Jars that Spark already ships (Scala, Jackson, Hadoop, Parquet ...) are
not kept: Spark's own win, and two versions of one library on the classpath is a failure waiting to happen.

Fetched with Maven (``mvn dependency:copy-dependencies``) when it is installed, else with Spark's own
resolver (``spark.jars.packages``, Ivy), from Maven Central either way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from streaming.lakehouse.jvmcache import cache_folder

__all__ = ["DeltaJars", "delta_jars", "fetch", "main"]

SCALA = "2.13"
COMPLETE = "COMPLETE"
EXTENSIONS = "io.delta.sql.DeltaSparkSessionExtension"
CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
FETCH_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class DeltaJars:
    """The Delta Lake jars matching the installed delta-spark (``version``) and pyspark (``spark``)."""

    version: str | None  # the installed delta-spark, None when it is not installed
    spark: str  # pyspark's major.minor

    @property
    def coordinates(self) -> str:
        """Maven coordinates of delta-spark for this Spark line (4.x names the Spark version, as
        ``delta.pip_utils.configure_spark_with_delta_pip`` does)."""
        return f"io.delta:delta-spark_{self.spark}_{SCALA}:{self.version}"

    @property
    def folder(self) -> Path:
        return cache_folder() / "jars" / f"delta-{self.version}-spark-{self.spark}"

    def files(self) -> list[Path]:
        """The cached jars, or [] when they were not (completely) fetched."""
        if self.version is None or not (self.folder / COMPLETE).is_file():
            return []
        return sorted(self.folder.glob("*.jar"))

    def how_to_add(self) -> str:
        """One line: how to make the native engine available on this machine."""
        if self.version is None:
            return "delta-spark is not installed: run ./setup.sh (pip install delta-spark)"
        return (f"run ./setup.sh with Maven Central reachable (it fetches {self.coordinates} and its "
                f"dependencies into {self.folder}), or copy those jars there and create the file {COMPLETE}")


def delta_jars() -> DeltaJars:
    import pyspark

    try:
        version: str | None = metadata.version("delta-spark")
    except metadata.PackageNotFoundError:
        version = None
    return DeltaJars(version, ".".join(pyspark.__version__.split(".")[:2]))


def _artifact(name: str) -> str:
    """``jackson-core-2.13.5.jar`` -> ``jackson-core``: the artifact a jar file is a version of."""
    return re.sub(r"-\d[^-]*(-[A-Za-z0-9.]+)?\.jar$", "", name)


def _spark_artifacts() -> set[str]:
    import pyspark

    return {_artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}


POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>xray-lakehouse</groupId><artifactId>delta-jars</artifactId><version>1</version>
<dependencies><dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>
<version>{version}</version></dependency></dependencies></project>
"""


def _fetch_with_maven(jars: DeltaJars, into: Path, work: Path) -> None:
    group, artifact, version = jars.coordinates.split(":")
    (work / "pom.xml").write_text(POM.format(group=group, artifact=artifact, version=version))
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={into}", "-DincludeScope=runtime"],
        capture_output=True, text=True, timeout=FETCH_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        errors = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        raise RuntimeError(errors[0] if errors else f"mvn exited with {result.returncode}")


def _fetch_with_spark(jars: DeltaJars, into: Path, work: Path) -> None:
    """Spark's own resolver: a throw-away local JVM with ``spark.jars.packages``, Ivy's cache in ``work``."""
    script = (
        "import sys\nfrom pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false')"
        ".config('spark.jars.packages', sys.argv[1]).config('spark.jars.ivy', sys.argv[2]).getOrCreate()\n"
        "s.stop()\n")
    result = subprocess.run([sys.executable, "-c", script, jars.coordinates, str(work / "ivy")],
                            capture_output=True, text=True, timeout=FETCH_TIMEOUT_SECONDS, check=False)
    fetched = list((work / "ivy" / "jars").glob("*.jar"))
    if result.returncode != 0 or not fetched:
        lines = [line for line in result.stderr.splitlines() if "unresolved" in line or "Exception" in line]
        raise RuntimeError(lines[0].strip() if lines else f"Spark's resolver exited with {result.returncode}")
    for jar in fetched:
        # Ivy names them organisation_artifact-revision.jar; keep Maven's artifact-revision.jar.
        shutil.copy2(jar, into / jar.name.split("_", 1)[-1])


def fetch(force: bool = False) -> tuple[bool, str]:
    """Fetch the jars into the cache unless there already. Returns (available, one line saying so)."""
    jars = delta_jars()
    if jars.version is None:
        return False, jars.how_to_add()
    if jars.files() and not force:
        return True, f"Delta Lake jars {jars.version} for Spark {jars.spark} already in {jars.folder}"
    jars.folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="delta-jars-", dir=jars.folder.parent) as temporary:
        work, staged = Path(temporary), Path(temporary) / "jars"
        staged.mkdir()
        try:
            if shutil.which("mvn"):
                _fetch_with_maven(jars, staged, work)
                how = "Maven"
            else:
                _fetch_with_spark(jars, staged, work)
                how = "Spark's resolver"
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as error:
            return False, (f"Delta Lake jars not fetched ({str(error).strip() or type(error).__name__}): "
                           f"{jars.how_to_add()}; until then the service uses delta-rs")
        shipped = _spark_artifacts()
        for jar in list(staged.glob("*.jar")):
            if _artifact(jar.name) in shipped:
                jar.unlink()
        (staged / COMPLETE).write_text(f"{jars.coordinates}\n")
        shutil.rmtree(jars.folder, ignore_errors=True)
        os.replace(staged, jars.folder)  # the folder appears whole, marker included
    count = len(jars.files())
    return True, f"Delta Lake jars {jars.version} for Spark {jars.spark}: {count} jar(s) in {jars.folder} ({how})"


def main(argv: list[str] | None = None) -> int:
    """``python -m streaming.lakehouse.deltajars [--force] [--require]``: fetch the jars, print one line.
    Exits 0 offline too (the service then uses delta-rs); 1 only under ``--require`` when they are not
    there. ``--classpath``: print the cached jars comma-separated (for ``spark-submit --jars``)."""
    args = sys.argv[1:] if argv is None else argv
    if "--classpath" in args:  # the cached jars, comma-separated (spark-submit --jars); nothing when none
        print(",".join(str(jar) for jar in delta_jars().files()))
        return 0
    available, line = fetch(force="--force" in args)
    print(f"setup: {line}")
    return 1 if "--require" in args and not available else 0


if __name__ == "__main__":
    sys.exit(main())
