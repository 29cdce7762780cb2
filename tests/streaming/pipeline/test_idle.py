"""``xray stream --once`` with nothing to do: one line in a second, without Spark; anything pending, a new or
changed file or a batch to replay, and the stream runs (real Spark for the first run, real Delta, real files)."""

from __future__ import annotations

import os
import shutil

import pytest
from imagefiles import labelled_xray, stage_labelled_dataset, write

from streaming.cli.commands import main
from streaming.core.errors import LakehouseBusyError
from streaming.core.locks import stream_lock
from streaming.pipeline.idle import nothing_to_do
from streaming.pipeline.service import run_stream

LAYERS = ("bronze", "silver")  # no champion in this lakehouse: gold would have images waiting


@pytest.fixture
def streamed(spark, config):
    """A lakehouse whose landing was streamed once: four files, all ingested."""
    stage_labelled_dataset(config.landing_dir, per_class=2)
    service = run_stream(spark, config, layers=LAYERS, once=True)
    assert service.processed == 4
    return config


def test_an_idle_once_is_one_line_without_spark(streamed, capsys, monkeypatch):
    config = streamed
    assert nothing_to_do(config, LAYERS).startswith("nothing new: the 4 file(s) in landing were all ingested, "
                                                    "no batch to replay; drop images into ")
    import streaming.cli.commands as cli

    monkeypatch.setattr(cli, "_spark", lambda config: pytest.fail("Spark started for an idle --once"))
    argv = ["stream", "--once", "--layer", "bronze", "--layer", "silver", "--lakehouse", str(config.root)]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("xray stream --once: nothing new: the 4 file(s)"), out


def test_a_stream_that_runs_and_finds_nothing_says_so(streamed, spark):
    assert run_stream(spark, streamed, layers=LAYERS, once=True).processed == 0  # what the command's line uses


def test_images_waiting_for_a_prediction_are_work(streamed):
    assert nothing_to_do(streamed, ("bronze", "silver", "gold")) is None  # gold would score them (catch-up)


def test_a_new_file_is_work(streamed):
    write(streamed.landing_dir / "train" / "NORMAL" / "IM-0999-0001.jpeg", labelled_xray("NORMAL", 999))
    assert nothing_to_do(streamed, LAYERS) is None


def test_a_changed_file_is_work(streamed):
    some = next(streamed.landing_dir.rglob("*.jpeg"))
    stat = some.stat()
    os.utime(some, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert nothing_to_do(streamed, LAYERS) is None


def test_a_batch_to_replay_is_work(streamed):
    commits = streamed.checkpoint_path("bronze") / "commits"
    newest = max(int(name) for name in os.listdir(commits) if name.isdigit())
    (commits / str(newest)).unlink()  # planned, not committed: the next start replays it
    assert nothing_to_do(streamed, LAYERS) is None


def test_silver_alone_and_a_first_run_go_to_spark(streamed, config):
    assert nothing_to_do(streamed, ("silver",)) is None
    shutil.rmtree(streamed.checkpoint_path("bronze"))
    assert nothing_to_do(streamed, LAYERS) is None


def test_a_running_stream_is_refused_as_before(streamed):
    with stream_lock(streamed.root), pytest.raises(LakehouseBusyError):
        nothing_to_do(streamed, LAYERS)
