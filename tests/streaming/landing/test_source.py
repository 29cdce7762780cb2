"""The landing folder through `xray stream --once` (streaming/landing_source.py on real Spark and Delta):
every real file exactly once with its own bytes, nothing outside landing read."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable
from imagefiles import AWKWARD_NAMES, jpeg_bytes, write, xray_like
from support import REPO

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
