"""No raw patient identifier past bronze, and a lakehouse private by default.

One stream + retrain + metrics over files named with patient identifiers (some quarantined), then: every
string of every non-bronze table, the reports and the stream's INFO log are scanned for the identifiers
and paths; path_ref joins silver to bronze; nothing under the lakehouse is open to group or others; an
unprivileged user cannot read a bronze Parquet file.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from imagefiles import labelled_xray, png_bytes, stage_labelled_dataset, write, xray_like
from support import strings_in

from streaming.core.config import load_config
from streaming.core.permissions import apply_permissions
from streaming.pipeline.service import run_stream

IDENTIFIERS = ("person9017", "IM-0999")
NOBODY = ("--reuid=65534", "--regid=65534", "--clear-groups")


def stage_identified_files(landing: Path) -> None:
    """Labelled images for a model, plus files named with the identifiers: valid, duplicate, quarantined."""
    stage_labelled_dataset(landing, per_class=16, split="train", seed=3)
    normal = labelled_xray("NORMAL", 99)
    write(landing / "train/PNEUMONIA/person9017_bacteria_1.jpeg", labelled_xray("PNEUMONIA", 98))
    write(landing / "train/NORMAL/IM-0999-0001.jpeg", normal)
    write(landing / "train/NORMAL/IM-0999-0003.jpeg", normal)  # a duplicate: counted, not written
    write(landing / "train/PNEUMONIA/person9017_bacteria_2.jpeg", b"patient notes, not an image\n" * 20)
    write(landing / "train/NORMAL/IM-0999-0002.jpeg", png_bytes(xray_like(7)))  # PNG named .jpeg


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def streamed(spark):
    """(config, INFO log lines) after stream --once, retrain and metrics in a lakehouse whose parent others
    may enter (pytest's own temporary folders are 0700, which would hide what the lakehouse itself allows)."""
    from batch.evaluation.metrics import run_metrics
    from batch.training.retrain import retrain

    parent = Path(tempfile.mkdtemp(prefix="xray-privacy-"))
    parent.chmod(0o755)
    config = load_config(environ={}, lakehouse=str(parent / "lakehouse"), spark_master="local[2]",
                         shuffle_partitions=2)
    stage_identified_files(config.landing_dir)
    apply_permissions(config)  # what `xray` does first (the session fixture already set the umask)
    collect, root_logger = _Collect(), logging.getLogger()
    previous_level = root_logger.level
    root_logger.addHandler(collect)
    root_logger.setLevel(logging.INFO)
    try:
        run_stream(spark, config, once=True)
        retrain(spark, config)
        run_metrics(spark, config)
    finally:
        root_logger.removeHandler(collect)
        root_logger.setLevel(previous_level)
    yield config, collect.lines
    shutil.rmtree(parent, ignore_errors=True)


def table(config, name: str) -> pa.Table:
    return DeltaTable(str(config.table_path(name))).to_pyarrow_table()


def test_no_identifier_or_path_past_bronze(streamed):
    config, log_lines = streamed
    bronze = table(config, "bronze_xray_images").to_pylist()
    forbidden = {*IDENTIFIERS, str(config.landing_dir)}
    forbidden |= {r["file_name"].rsplit(".", 1)[0] for r in bronze} | {r["path"] for r in bronze}
    # The test can fail: bronze, the raw layer, holds the paths and names it looks for.
    assert any(str(config.landing_dir) in r["path"] and "person9017" in r["file_name"] for r in bronze)
    assert any("IM-0999" in r["path"] for r in bronze)

    scanned = 0
    for folder in sorted(config.tables_dir.iterdir()):
        if folder.name == "bronze_xray_images":
            continue
        for row in table(config, folder.name).to_pylist():
            for text in strings_in(list(row.values())):
                scanned += 1
                leaked = [f for f in forbidden if f in text]
                assert not leaked, f"{folder.name} holds {leaked} in {text!r}"
    assert scanned > 100
    quarantine = table(config, "silver_quarantine").to_pylist()
    assert sorted(r["rule"] for r in quarantine) == ["format_matches_name", "is_image"]

    reports = [p for p in config.reports_dir.rglob("*") if p.is_file() and p.suffix in (".html", ".json")]
    assert reports
    for report in reports:
        text = report.read_text(errors="replace")
        assert not [f for f in forbidden if f in text], report

    assert any("bronze batch" in line for line in log_lines), "the stream's INFO log was captured"
    for line in log_lines:
        assert not [f for f in forbidden if f in line], line


def test_path_ref_joins_silver_and_quarantine_to_bronze(streamed):
    config, _ = streamed
    bronze = {r["path_ref"]: r for r in table(config, "bronze_xray_images").to_pylist()}
    assert len(bronze) == len(table(config, "bronze_xray_images"))  # one ref per path
    metadata = table(config, "silver_xray_metadata").to_pylist()
    for row in metadata:
        assert bronze[row["path_ref"]]["content_sha256"] == row["image_id"]
    names = {bronze[r["path_ref"]]["file_name"] for r in metadata}
    assert "person9017_bacteria_1.jpeg" in names
    assert len(names & {"IM-0999-0001.jpeg", "IM-0999-0003.jpeg"}) == 1  # the first copy only
    quarantined = {bronze[r["path_ref"]]["file_name"]: r["rule"] for r in table(config, "silver_quarantine").to_pylist()}
    assert quarantined == {"person9017_bacteria_2.jpeg": "is_image", "IM-0999-0002.jpeg": "format_matches_name"}
    # Patient ids: keyed hashes, the same patient alike across images.
    patients = {bronze[r["path_ref"]]["file_name"]: r["patient_id"] for r in metadata}
    assert patients["IM-3000-0001.jpeg"] == patients["IM-3000-0002.jpeg"] != patients["IM-3001-0001.jpeg"]


def open_entries(root: Path, allowed: int) -> list[str]:
    """Entries under ``root`` (itself included) with permission bits outside ``allowed`` (symlinks skipped)."""
    found = []
    for folder, subfolders, names in os.walk(root):
        for path in [Path(folder)] + [Path(folder) / n for n in subfolders + names]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077 & ~allowed:
                found.append(f"{path.relative_to(root.parent)} {stat.S_IMODE(mode):04o}")
    return sorted(set(found))


def test_owner_mode_leaves_nothing_open_to_group_or_others(streamed):
    config, _ = streamed
    root = config.root
    assert (root / "mlflow" / "mlflow.db").is_file() and any(config.reports_dir.iterdir())
    assert list((config.tables_dir / "bronze_xray_images").glob("*.parquet"))
    assert open_entries(root, allowed=0) == []
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "_secrets" / "patient_id_salt").stat().st_mode) == 0o600


def run_as_nobody(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", *NOBODY, *command], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to read as another user")
@pytest.mark.skipif(os.geteuid() != 0, reason="switching to user nobody needs root")
def test_an_unprivileged_user_cannot_read_bronze(streamed):
    config, _ = streamed
    parquet = sorted((config.tables_dir / "bronze_xray_images").glob("*.parquet"))[0]
    control = config.root.parent / "control.txt"
    control.write_text("readable")
    control.chmod(0o644)
    # The control proves nobody can reach the lakehouse's parent: only the lakehouse's modes stop it.
    assert run_as_nobody("cat", str(control)).stdout == "readable"
    denied = run_as_nobody("cat", str(parquet))
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    # Even with the root opened again, the file itself is private.
    config.root.chmod(0o755)
    try:
        for folder in (config.tables_dir, parquet.parent):
            folder.chmod(0o755)
        denied = run_as_nobody("cat", str(parquet))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
    finally:
        for folder in (parquet.parent, config.tables_dir, config.root):
            folder.chmod(0o700)


def test_existing_open_lakehouse_is_tightened_with_one_info_line(tmp_path, caplog):
    root = tmp_path / "old"
    (root / "_secrets").mkdir(parents=True)
    root.chmod(0o755)
    (root / "_secrets").chmod(0o755)
    caplog.set_level(logging.INFO, logger="streaming.core.permissions")
    config = load_config(environ={}, lakehouse=str(root))
    previous = os.umask(0o022)
    try:
        apply_permissions(config)
        assert os.umask(0o022) == 0o077
        apply_permissions(load_config(environ={}, lakehouse=str(root), lakehouse_permissions="group"))
        assert os.umask(0o022) == 0o027
    finally:
        os.umask(previous)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("0755 to 0700" in m and "lakehouse root" in m for m in messages) == 1
    assert sum("0755 to 0700" in m and "key folder" in m for m in messages) == 1
    assert stat.S_IMODE(root.stat().st_mode) == 0o750  # then set for group mode
    assert stat.S_IMODE((root / "_secrets").stat().st_mode) == 0o700


@pytest.mark.slow
def test_group_mode_lets_the_group_read_only(tmp_path):
    """`xray stream --once` in its own process (its own JVM and workers, started under umask 027)."""
    lakehouse = tmp_path / "lh"
    previous = os.umask(0o027)  # landing files come from elsewhere: as a group-mode site would drop them
    try:
        write(lakehouse / "landing/train/NORMAL/IM-0998-0001.jpeg", labelled_xray("NORMAL", 1))
    finally:
        os.umask(previous)
    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "XRAY_SPARK_MASTER": "local[1]",
                   "XRAY_SHUFFLE_PARTITIONS": "1", "XRAY_LAKEHOUSE_PERMISSIONS": "group"}
    finished = subprocess.run([sys.executable, "-m", "streaming.cli", "stream", "--once", "--lakehouse",
                               str(lakehouse)], env=environment, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert open_entries(lakehouse, allowed=0o050) == []  # group read (and enter) at most, others nothing
    assert stat.S_IMODE(lakehouse.stat().st_mode) == 0o750
    parquet = sorted((lakehouse / "tables/bronze_xray_images").glob("*.parquet"))[0]
    assert stat.S_IMODE(parquet.stat().st_mode) == 0o640  # written by a Spark Python worker
    assert stat.S_IMODE((lakehouse / "_secrets").stat().st_mode) == 0o700


def test_a_lakehouse_from_before_path_ref_is_refused_with_one_line(spark, config):
    """Silver written by the old code (file_path, no path_ref): one line naming the table and the way out."""
    from deltalake import write_deltalake

    from streaming.core.errors import SchemaMismatchError
    from streaming.lakehouse.catalog import SILVER_METADATA
    from streaming.lakehouse.deltars import arrow_schema_of_spark
    from streaming.lakehouse.engine import Lakehouse

    current = arrow_schema_of_spark(SILVER_METADATA.schema)
    old = pa.schema([f if f.name != "path_ref" else pa.field("file_path", pa.string()) for f in current])
    write_deltalake(str(config.table_path(SILVER_METADATA.name)), old.empty_table())
    with pytest.raises(SchemaMismatchError) as caught:
        Lakehouse(spark, config).ensure_tables()
    message = str(caught.value)
    assert "\n" not in message and "silver_xray_metadata" in message and "re-create the lakehouse" in message
    assert "missing: path_ref" in message and "not declared: file_path" in message
