"""The landing folder through `xray stream --once` (streaming/landing_source.py on real Spark and Delta):
every real file exactly once with its own bytes, nothing outside landing read."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import AWKWARD_NAMES, jpeg_bytes, write, xray_like
from support import REPO

from streaming.core.errors import LandingLogCompactedError, received
from streaming.landing.log import LandingLog
from streaming.landing.scan import scan_landing
from streaming.landing.source import LandingStreamReader, clean, retained_start
from streaming.pipeline.service import run_stream

SECRET = b"root:$6$NOT-FOR-THE-LAKEHOUSE$:19000:0:99999:7:::\n"


def rows(config, table: str, columns: list[str] | None = None) -> list[dict]:
    return DeltaTable(str(config.table_path(table))).to_pyarrow_table(columns=columns).to_pylist()


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_awkward_names_symlinks_loops_and_fifos(spark, config, tmp_path):
    landing = config.landing_dir
    contents = {name: jpeg_bytes(xray_like(40 + i)) for i, name in enumerate(AWKWARD_NAMES)}
    for name, content in contents.items():
        write(landing / "train" / "NORMAL" / name, content)
    secret = write(tmp_path / "etc" / "shadow", SECRET)
    os.symlink(secret, landing / "train" / "NORMAL" / "shadow.jpeg")
    os.symlink(tmp_path / "etc", landing / "train" / "etc-folder")
    os.symlink("..", landing / "train" / "NORMAL" / "loop")
    os.mkfifo(landing / "train" / "NORMAL" / "pipe.jpeg")

    run_stream(spark, config, layers=("bronze", "silver"), once=True)  # returns: the FIFO blocked nothing

    bronze = {os.path.relpath(r["path"], landing): r for r in rows(config, "bronze_xray_images")}
    assert len(bronze) == len(AWKWARD_NAMES) + 3, "each entry once: the loop repeats nothing"
    for name, content in contents.items():
        row = bronze[f"train/NORMAL/{name}"]
        assert row["content"] == content and row["content_sha256"] == hashlib.sha256(content).hexdigest(), name
    assert {k: bronze[k]["content_status"] for k in ("train/NORMAL/shadow.jpeg", "train/etc-folder",
                                                     "train/NORMAL/pipe.jpeg")} == {
        "train/NORMAL/shadow.jpeg": "outside_landing", "train/etc-folder": "outside_landing",
        "train/NORMAL/pipe.jpeg": "fifo"}
    assert len(rows(config, "silver_xray_metadata")) == len(AWKWARD_NAMES)
    quarantine = sorted(r["rule"] for r in rows(config, "silver_quarantine"))
    assert quarantine == ["inside_landing", "inside_landing", "regular_file"]
    assert files_containing(config.root, b"NOT-FOR-THE-LAKEHOUSE") == [], "the link's target was stored"


def test_lost_offsets_and_commits_lose_nothing(spark, config):
    landing = config.landing_dir
    for i in range(3):
        write(landing / "train" / "NORMAL" / f"IM-01{i:02d}-0001.jpeg", jpeg_bytes(xray_like(60 + i)))
    run_stream(spark, config, once=True)
    checkpoint = config.checkpoint_path("bronze")
    newest = max(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    (checkpoint / "offsets" / str(newest)).unlink()
    (checkpoint / "commits" / str(newest)).unlink()
    for i in range(20):
        write(landing / "train" / "PNEUMONIA" / f"person{500 + i}_virus_1.jpeg", jpeg_bytes(xray_like(80 + i)))

    run_stream(spark, config, once=True)
    run_stream(spark, config, once=True)

    paths = [r["path"] for r in rows(config, "bronze_xray_images", ["path"])]
    assert len(paths) == len(set(paths)) == 23
    images = [r["image_id"] for r in rows(config, "silver_xray_metadata", ["image_id"])]
    assert len(images) == len(set(images)) == 23


def test_admission_limit_splits_batches_and_replans_them_alike(spark, config):
    config = config.with_overrides(max_files_per_trigger=2)
    for i in range(5):
        write(config.landing_dir / "val" / "NORMAL" / f"IM-02{i:02d}-0001.jpeg", jpeg_bytes(xray_like(120 + i)))
    run_stream(spark, config, layers=("bronze",), once=True)
    batches = sorted(r["batch_id"] for r in rows(config, "bronze_xray_images", ["batch_id"]))
    assert batches == [0, 0, 1, 1, 2]
    plan = (config.checkpoint_path("bronze") / "landing" / "plan.jsonl").read_text().splitlines()
    assert len(plan) == 3


def test_archive_moves_files_at_commit_and_a_name_dropped_again_is_new(spark, config):
    config = config.with_overrides(clean_source="archive")
    first = write(config.landing_dir / "train" / "NORMAL" / "IM-0301-0001.jpeg", jpeg_bytes(xray_like(7)))
    original = first.read_bytes()
    run_stream(spark, config, layers=("bronze",), once=True)
    assert not first.exists()
    assert (config.archive_dir / "train" / "NORMAL" / "IM-0301-0001.jpeg").read_bytes() == original

    run_stream(spark, config, layers=("bronze",), once=True)  # nothing new: nothing ingested again
    assert len(rows(config, "bronze_xray_images", ["path"])) == 1

    write(first, jpeg_bytes(xray_like(8)))  # the same name sent again, e.g. a corrected export
    run_stream(spark, config, layers=("bronze",), once=True)
    assert len(rows(config, "bronze_xray_images", ["path"])) == 2
    assert len(list((config.archive_dir / "train" / "NORMAL").iterdir())) == 2, "both copies archived"


def test_a_late_file_with_an_old_modification_time_is_ingested(spark, config):
    """`cp -p`, `rsync -t` or an extracted archive keep old dates: such a file is still new to landing."""
    write(config.landing_dir / "IM-0401-0001.jpeg", jpeg_bytes(xray_like(1)))
    run_stream(spark, config, layers=("bronze",), once=True)
    late = write(config.landing_dir / "IM-0402-0001.jpeg", jpeg_bytes(xray_like(2)))
    os.utime(late, (1_000_000, 1_000_000))
    run_stream(spark, config, layers=("bronze",), once=True)
    assert len(rows(config, "bronze_xray_images", ["path"])) == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is needed to drop root's "
                    "file-access capabilities")
def test_an_unreadable_subfolder_is_skipped_and_reported_while_the_rest_flows(config):
    landing = config.landing_dir
    write(landing / "train" / "NORMAL" / "IM-0501-0001.jpeg", jpeg_bytes(xray_like(1)))
    write(landing / "locked" / "IM-0502-0001.jpeg", jpeg_bytes(xray_like(2)))
    os.chmod(landing / "locked", 0)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "XRAY_LAKEHOUSE": str(config.root),
           "XRAY_SPARK_MASTER": "local[1]"}
    try:
        # Root reads every folder; without these two capabilities it obeys the permission bits like anyone.
        run = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
                              sys.executable, "-m", "streaming.cli", "stream", "--once", "--layer", "bronze"],
                             capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    finally:
        os.chmod(landing / "locked", 0o755)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "AccessDeniedException" not in run.stderr
    assert "landing: skipped unreadable folder" in run.stderr
    assert [Path(r["path"]).name for r in rows(config, "bronze_xray_images", ["path"])] == ["IM-0501-0001.jpeg"]
    events = rows(config, "pipeline_events", ["query", "message"])
    assert any("unreadable folder" in (e["message"] or "") for e in events)
    assert all("locked" not in (e["message"] or "") for e in events), "events name no folder"
    from streaming.ops.status import landing_problems

    assert [(p["kind"], p["path"]) for p in landing_problems(config)] == [("unreadable_folder", "locked")]


# ---- the landing log stays bounded ----------------------------------------------------------------------
class Files:
    """A read limit as Spark hands it to ``latestOffset`` (ReadMaxFiles)."""

    def __init__(self, max_files: int):
        self.max_files = max_files


def run_batches(tmp_path, batches: int, clean_source: str, retain: int = 5, compact_after: int = 10) -> dict:
    """Drive the reader as Spark's micro-batch loop does (plan the batch, write ``offsets/N``, commit the
    previous batch to the source, purge offsets older than the last ``retain``, read, then clean_source),
    two new files a batch. Returns what was read and what the log holds at the end."""
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    (checkpoint / "offsets").mkdir(parents=True)
    options = {"landing": str(landing), "log": str(checkpoint / "landing"), "compactafter": str(compact_after)}
    reader, start, read, sizes = LandingStreamReader(options), {"seq": 0}, [], []
    for batch in range(batches):
        for i in range(2):
            write(landing / f"IM-{batch:04d}-{i}.jpeg", b"x")
        end = reader.latestOffset(start, Files(2))
        (checkpoint / "offsets" / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{json.dumps(end)}\n')
        if batch:
            reader.commit(start)
        for old in range(batch - retain + 1):
            (checkpoint / "offsets" / str(old)).unlink(missing_ok=True)
        rows = [row for part in reader.partitions(start, end) for row in part.entries]
        read.extend(row["path"] for row in rows)
        if clean_source == "delete":
            for row in rows:
                clean(row["path"], landing, "delete", tmp_path / "archive")
            LandingLog.record_cleaned(checkpoint / "landing", [row["seq"] for row in rows])
        sizes.append(sum(f.stat().st_size for f in (checkpoint / "landing").rglob("*") if f.is_file()))
        start = end
    folder = checkpoint / "landing"
    return {"read": read, "reader": reader, "sizes": sizes, "folder": folder,
            "records": sum(len(f.read_text().splitlines()) for f in folder.rglob("*.jsonl"))}


def test_with_clean_source_the_log_keeps_about_the_retained_batches(tmp_path):
    run = run_batches(tmp_path, batches=200, clean_source="delete")
    assert len(run["read"]) == len(set(run["read"])) == 400, "every file read once"
    # 5 retained batches + up to 10 droppable entries before a compaction, each entry in files/ and
    # cleaned.jsonl, a plan record per batch: far below the 400 files (and 1,000 records) streamed.
    assert run["records"] <= 2 * (2 * 6 + 10) + 6 + 5, run["records"]
    assert max(run["sizes"][100:]) <= 2 * max(run["sizes"][:20]), "the log's bytes do not grow with time"
    assert run["reader"].log.old_paths == 0
    assert not any(f.stat().st_size > 10_000 for f in run["folder"].rglob("*.jsonl"))


def test_with_files_left_in_landing_the_log_keeps_one_path_per_file(tmp_path):
    run = run_batches(tmp_path, batches=60, clean_source="off")
    assert len(run["read"]) == len(set(run["read"])) == 120
    reader = run["reader"]
    # Each compaction writes the old paths again: it waits until as many entries can be dropped.
    assert reader.log.entries.first >= 60 and reader.log.old_paths == reader.log.entries.first
    base = json.loads((run["folder"] / "base.json").read_text())
    assert len(base["seen"]) == reader.log.old_paths, "the old entries are kept as paths only"
    # Nothing is new again: the next scan finds every file in landing known.
    end = reader.latestOffset({"seq": len(reader.log.entries)}, Files(2))
    assert end == {"seq": 120} and LandingLog(run["folder"]).add_new(scan_landing(tmp_path / "landing")[0]) == []


def test_a_batch_below_what_the_log_keeps_fails_with_a_named_error(tmp_path):
    run = run_batches(tmp_path, batches=30, clean_source="delete")
    reader, first = run["reader"], run["reader"].log.entries.first
    assert first > 0
    for ask in (lambda: reader.partitions({"seq": 0}, {"seq": 2}), lambda: reader.latestOffset({"seq": 0}, Files(2))):
        with pytest.raises(RuntimeError) as failure:  # what crosses the JVM: the error's name and message
            ask()
        error = received(str(failure.value))
        assert isinstance(error, LandingLogCompactedError) and f"from number {first} on" in str(error)
    # A fresh reader (a restarted query) over the compacted log replans the retained batches alike.
    again = LandingStreamReader(reader.options)
    assert [row for p in again.partitions({"seq": first}, {"seq": 60}) for row in p.entries] == [
        row for p in reader.partitions({"seq": first}, {"seq": 60}) for row in p.entries]


def test_retained_start_reads_the_oldest_offsets_file(tmp_path):
    offsets = tmp_path / "offsets"
    assert retained_start(tmp_path, {}) is None, "no checkpoint yet: nothing may be dropped"
    offsets.mkdir()
    (offsets / "7").write_text('v1\n{"batchWatermarkMs":0}\n{"seq": 30}\n')
    (offsets / "8").write_text('v1\n{"batchWatermarkMs":0}\n{"seq": 40}\n')
    (offsets / ".7.crc").write_text("")
    assert retained_start(tmp_path, {20: 30, 30: 40}) == 20, "the start of the oldest batch kept"
    assert retained_start(tmp_path, {}) == 30
    (offsets / "7").write_text('v1\n{"batchWatermarkMs":0}\n{"other": 1}\n')
    assert retained_start(tmp_path, {}) is None, "not our offsets: nothing may be dropped"


@pytest.mark.slow
def test_a_long_stream_of_small_batches_keeps_a_small_log_and_every_image_once(spark, config, monkeypatch):
    """`xray stream --once` twice over one-file batches with clean_source = archive and Spark keeping 2
    batches: the landing log ends holding the second scan's entries only, bronze every image once; a
    checkpoint rewound further back than the log keeps stops with the named error."""
    from pyspark.sql.streaming.readwriter import DataStreamReader

    from streaming.pipeline.consistency import rewind_checkpoint

    config = config.with_overrides(max_files_per_trigger=1, clean_source="archive")
    load = DataStreamReader.load
    monkeypatch.setattr(DataStreamReader, "load", lambda self, *a, **k: load(self.option("compactAfter", "1"), *a, **k))
    previous = spark.conf.get("spark.sql.streaming.minBatchesToRetain")
    spark.conf.set("spark.sql.streaming.minBatchesToRetain", "2")
    folder = config.checkpoint_path("bronze") / "landing"
    try:
        for scan in range(2):  # each run's scan writes one segment of the log
            for i in range(5 if scan == 0 else 4):
                write(config.landing_dir / "train" / "NORMAL" / f"IM-07{scan}{i}-0001.jpeg",
                      jpeg_bytes(xray_like(200 + 10 * scan + i)))
            run_stream(spark, config, layers=("bronze",), once=True)
        paths = [r["path"] for r in rows(config, "bronze_xray_images", ["path"])]
        assert len(paths) == len(set(paths)) == 9
        assert len(list((config.archive_dir / "train" / "NORMAL").iterdir())) == 9
        logged = [line for segment in (folder / "files").glob("*.jsonl") for line in segment.read_text().splitlines()]
        plan = (folder / "plan.jsonl").read_text().splitlines()
        assert len(logged) == 4 and len(plan) <= 4, (len(logged), len(plan))
        assert LandingLog(folder).entries.first >= 5

        rewind_checkpoint(config.checkpoint_path("bronze"), -1)  # as `xray recover` after an old lost commit
        with pytest.raises(LandingLogCompactedError, match="keeps them from number"):
            run_stream(spark, config, layers=("bronze",), once=True)
    finally:
        spark.conf.set("spark.sql.streaming.minBatchesToRetain", previous)
    assert len(rows(config, "bronze_xray_images", ["path"])) == 9
