"""The retrain cycle (batch/retraining.py): one at a time per lakehouse, a failed cycle is one WARNING line and
recorded, and `xray retrain --every` through the CLI's own entry point, stopped by a real SIGTERM: cycles run on
the schedule, gold lagging the champion is re-scored, the last cycle is kept in the lakehouse so a restart
waits for it (without starting Spark), and the stop exits 0. In-process on the test run's SparkSession: a
subprocess would add a JVM start to the two cycles."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from populated import synthetic_silver
from support import table_rows, wait_until

import streaming.cli.commands as commands
import streaming.cli.handlers as handlers
from batch import retraining
from batch.training.schedule import RetrainPolicy
from streaming.core.config import load_config
from streaming.core.errors import LakehouseBusyError
from streaming.lakehouse.direct import append_rows


def sigterm_once(condition: Callable[[], bool], timeout: float = 300) -> None:
    """Send this process SIGTERM once ``condition`` holds (or after ``timeout``: the test then fails on what
    the command did, rather than hanging)."""

    def watch() -> None:
        wait_until(condition, timeout, step=0.2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def runs(config) -> list[dict]:
    if not config.table_path("retrain_runs").exists():
        return []
    return sorted(table_rows(config, "retrain_runs"), key=lambda row: row["finished_time"])


def test_a_retrain_by_hand_is_refused_while_a_cycle_runs_and_recorded_after(config, monkeypatch):
    def no_spark():
        raise AssertionError("Spark must not start for a refused retrain")

    with retraining.retrain_lock(config.root), pytest.raises(LakehouseBusyError, match=r"a retrain on .* is running \(pid"):
        retraining.run_cycle(no_spark, config, full=False)
    assert not config.table_path("retrain_runs").exists()

    steps = []
    monkeypatch.setattr(retraining, "_steps", lambda *args: steps.append(args[3:]))
    retraining.run_cycle(lambda: None, config, seed=3, force_promote=True, full=False)  # as `xray retrain` does
    assert steps == [(3, True, False)]
    (row,) = table_rows(config, "retrain_runs")
    assert (row["trigger"], row["runner"], row["outcome"]) == ("manual", "xray retrain", "ok")


def test_a_failed_cycle_is_one_warning_recorded_and_the_loop_goes_on(config, monkeypatch, caplog):
    append_rows(config, "silver_xray_metadata", [{"image_id": str(i), "label": i % 2} for i in range(4)])
    calls = []

    def failing_then_working(spark, config, row, seed, force_promote, full):
        calls.append(full)
        if len(calls) == 1:
            raise OSError(f"disk unplugged under {config.root}/tables\nsecond line")
        row.update(model_version="7", promoted=True, message="no champion yet")

    monkeypatch.setattr(retraining, "_steps", failing_then_working)
    loop = retraining.RetrainLoop(config, RetrainPolicy(interval_seconds=0.01, check_seconds=0.01), lambda: None,
                                  "xray stream")
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    with caplog.at_level(logging.INFO, logger="batch.retraining"):
        thread.start()
        wait_until(lambda: loop.cycles >= 2)
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and loop.cycles >= 2 and loop.failures == 1
    rows = sorted(table_rows(config, "retrain_runs"), key=lambda row: row["finished_time"])
    assert [(r["outcome"], r["model_version"], r["trigger"], r["runner"]) for r in rows[:2]] == [
        ("error", None, "interval", "xray stream"), ("ok", "7", "interval", "xray stream")]
    assert rows[0]["labelled_rows"] == 4 and str(config.root) not in rows[0]["message"]  # paths as keyed hashes
    assert rows[0]["message"].startswith("disk unplugged under path:")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("retrain: the cycle failed (disk unplugged under path:")
    assert warnings[0].endswith("recorded in retrain_runs, the next cycle retries")


@pytest.mark.slow
def test_retrain_every_runs_cycles_and_a_restart_waits_for_the_kept_time(spark, tmp_path, caplog, monkeypatch):
    config = load_config(environ={}, lakehouse=str(tmp_path / "lh"))
    metadata = synthetic_silver(SimpleNamespace(append_rows=lambda table, rows: append_rows(config, table, rows)))
    train = [row["image_id"] for row in metadata if row["split"] == "train"][:4]
    # Predictions of a model that is not the champion: the first cycle's promotion must re-score them.
    append_rows(config, "gold_pneumonia_predictions", [
        {"prediction_id": f"old-{image}", "image_id": image, "predicted_label": "NORMAL", "model_name": "old",
         "model_version": "1", "predicted_time": dt.datetime.now(dt.timezone.utc)} for image in train])
    sessions = []
    monkeypatch.setattr(handlers, "_spark", lambda config: sessions.append(config) or spark)
    command = ["retrain", "--lakehouse", str(config.root), "--every"]

    sigterm_once(lambda: len(runs(config)) >= 2)
    with caplog.at_level(logging.INFO):
        assert commands.main([*command, "2s"]) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "failed" in m], messages
    assert "retrain: stopping (signal 15) once the running cycle, if any, ends" in messages

    first, second = runs(config)[:2]
    assert (first["trigger"], first["runner"], first["outcome"]) == ("interval", "xray retrain --every", "ok")
    assert first["promoted"] and first["message"] == "no champion yet" and first["labelled_rows"] == 79
    assert first["rescored_rows"] == len(train)  # gold lagged the new champion...
    assert second["rescored_rows"] is None  # ... and no longer did
    assert int(second["model_version"]) == int(first["model_version"]) + 1
    # The interval counts from the end of the cycle before.
    assert (second["started_time"] - first["finished_time"]).total_seconds() >= 2
    assert {row["model_version"] for row in table_rows(config, "gold_pneumonia_predictions")} == {
        first["model_version"]}
    assert table_rows(config, "gold_model_performance")  # metrics ran in the cycle
    audit = [row for row in table_rows(config, "audit_log") if row["event"] == "finished"]
    assert [(row["command"], row["outcome"], row["exit_code"]) for row in audit] == [("retrain", "ok", 0)]
    assert first["audit_run_id"] == audit[0]["run_id"]

    # A restart honours the kept time: the last cycle just ended, so the next is an hour away, and Spark
    # does not start to wait for it.
    recorded, sessions[:] = runs(config), []
    caplog.clear()
    sigterm_once(lambda: any("next cycle in" in record.getMessage() for record in caplog.records))
    with caplog.at_level(logging.INFO):
        assert commands.main([*command, "1h"]) == 0
    waiting = [record.getMessage() for record in caplog.records if "next cycle in" in record.getMessage()]
    next_at = recorded[-1]["finished_time"] + dt.timedelta(hours=1)
    assert waiting and f"(at {next_at.isoformat(timespec='seconds')}; every 1h 0m" in waiting[0]
    assert sessions == [] and runs(config) == recorded
