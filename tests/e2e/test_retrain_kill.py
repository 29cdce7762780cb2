"""`xray retrain` is resumable after kill -9 at any point (the house rule for every command that changes
state): real `xray retrain` processes killed with SIGKILL while Spark reads silver for training and right
after MLflow registered a version (its tags, drift reference and the champion alias still to come), with no
champion yet and with one, then run again. At every point the champion is none or a whole version (tagged, loadable, scoring);
in the end exactly one champion, the newest complete version, serves gold: every silver image scored once.
Linux: the kill points are read from /proc and from the MLflow store (SQLite, opened read-only)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from imagefiles import stage_labelled_dataset
from support import REPO, table_rows

from streaming.core.registry import champion, load_model, version_tags
from streaming.pipeline.service import run_stream

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="kill points are read from /proc")]

WHOLE_VERSION_TAGS = ("model_family", "feature_version", "threshold", "run_id", "trained_through_silver_batch")


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}


def retrain_process(config, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "streaming.cli", "retrain", "--lakehouse", str(config.root)]
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=REPO, env=environment(), stdout=out, stderr=subprocess.STDOUT)


def descendants(pid: int) -> list[str]:
    """Command lines of the processes under ``pid``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        for child in children:
            try:
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        frontier = children
    return found


def store_rows(config, table: str) -> int:
    """Rows of a table of the MLflow store (0 before the store or the table exists)."""
    database = config.root / "mlflow" / "mlflow.db"
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=0.1) as connection:
            return connection.execute(f"select count(*) from {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


def kill_when(process: subprocess.Popen, reached, what: str, log: Path) -> None:
    deadline = time.monotonic() + 300
    try:
        while not reached() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert process.poll() is None, f"xray retrain ended before {what}: {log.read_text()[-2000:]}"
        assert reached(), f"xray retrain never reached {what} in 300 s"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)


def assert_champion_whole(config) -> None:
    """No champion, or one whose version is whole: every tag written, loads, and scores."""
    ref = champion(config)
    if ref is None:
        return
    tags = version_tags(config, ref)
    assert set(WHOLE_VERSION_TAGS) <= set(tags), f"champion v{ref.version} is half registered: {tags}"
    model = load_model(config, ref)
    from streaming.imaging.features import FEATURE_LENGTH

    assert model.predict_proba(np.zeros((2, FEATURE_LENGTH), np.float32)).shape == (2, 2)


def test_retrain_killed_at_any_point_is_finished_by_running_it_again(spark, config, tmp_path):
    stage_labelled_dataset(config.landing_dir, per_class=20, seed=3)
    run_stream(spark, config, layers=("bronze", "silver"), once=True)
    points = [
        ("Spark reading silver for training", lambda p: lambda: any("pyspark" in c for c in descendants(p.pid))),
        ("a version registered, before its tags and the alias",
         lambda p: lambda: store_rows(config, "model_versions") > versions),
    ]
    for index, (what, point) in enumerate(points):
        versions = store_rows(config, "model_versions")
        log = tmp_path / f"retrain-{index}.log"
        process = retrain_process(config, log)
        kill_when(process, point(process), what, log)
        assert_champion_whole(config)

    done = subprocess.run([sys.executable, "-m", "streaming.cli", "retrain", "--lakehouse", str(config.root)],
                          cwd=REPO, env=environment(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "now champion" in done.stdout, done.stdout
    first = champion(config)
    assert_champion_whole(config)

    # Killed again once a newer version is registered: the whole champion stays, or the whole new one serves.
    versions = store_rows(config, "model_versions")
    process = retrain_process(config, tmp_path / "retrain-again.log")
    kill_when(process, lambda: store_rows(config, "model_versions") > versions, "a second registration",
              tmp_path / "retrain-again.log")
    assert_champion_whole(config)
    assert int(champion(config).version) >= int(first.version)
    # Each run is a JVM and a fit (a minute or two on a loaded 2-core machine): two kill points, not more.

    run_stream(spark, config, once=True)  # gold: every silver image once, by the champion
    gold = table_rows(config, "gold_pneumonia_predictions")
    silver = {r["image_id"] for r in table_rows(config, "silver_image_features")}
    assert sorted(r["image_id"] for r in gold) == sorted(silver)
    assert {r["model_version"] for r in gold} == {champion(config).version}
