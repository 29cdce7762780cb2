"""``xray status`` on an empty lakehouse and on a populated one (shared with test_metrics)."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from populated import populated_lakehouse

from streaming.ops.status import GOLD_WAITING, print_status

# Runs once per Delta engine (tests/conftest.py).
pytestmark = pytest.mark.engine_dependent


def touch(path, when: dt.datetime, size: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (when.timestamp(), when.timestamp()))


def checkpoint(config, query: str, offsets: int, commits: int) -> None:
    folder = config.checkpoint_path(query)
    for kind, count in (("offsets", offsets), ("commits", commits)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for batch in range(count):
            (folder / kind / str(batch)).write_text("v1\n{}\n")
            (folder / kind / f".{batch}.crc").write_text("")


def test_status_of_an_empty_lakehouse(spark, config, capsys):
    touch(config.landing_dir / "train/NORMAL/a.jpeg", dt.datetime.now(dt.timezone.utc), 100)
    touch(config.landing_dir / "train/NORMAL/copying.jpeg.tmp", dt.datetime.now(dt.timezone.utc), 100)

    status = print_status(spark, config)

    assert all(not t["exists"] and t["rows"] is None for t in status["tables"])
    assert status["champion"]["version"] is None and status["gold_waiting"] == GOLD_WAITING
    assert status["landing_backlog"]["files"] == 1 and status["landing_backlog"]["bytes"] == 100
    assert [s["query"] for s in status["streams"]] == ["bronze", "silver", "gold"]
    assert all(s["last_batch_id"] is None and not s["checkpoint"]["exists"] for s in status["streams"])
    assert status["quarantine"] == {"total": 0, "by_rule": {}}
    text = capsys.readouterr().out
    assert "not created yet" in text and GOLD_WAITING in text
    assert max(len(line) for line in text.splitlines()) <= 100
    # Looking must not create anything: no tables, no MLflow database.
    assert not config.tables_dir.exists() and not (config.root / "mlflow").exists()


def test_status_of_a_populated_lakehouse(spark, tmp_path_factory, capsys):
    shared = populated_lakehouse(spark, tmp_path_factory)
    config, lakehouse, metadata = shared["config"], shared["lakehouse"], shared["metadata"]
    version = shared["trained"].version.version
    newest = dt.datetime(2024, 5, 1, 9, 0, 0, 123000, tzinfo=dt.timezone.utc)  # Spark lists whole ms
    lakehouse.append_rows("bronze_xray_images", [
        {"path": f"file:{config.landing_dir}/old.jpeg", "modification_time": newest - dt.timedelta(hours=1)},
        {"path": f"file:{config.landing_dir}/newest.jpeg", "modification_time": newest},
    ])
    touch(config.landing_dir / "old.jpeg", newest - dt.timedelta(hours=1))
    touch(config.landing_dir / "newest.jpeg", newest + dt.timedelta(microseconds=456))
    touch(config.landing_dir / "waiting.png", newest + dt.timedelta(seconds=5), size=2048)
    checkpoint(config, "bronze", offsets=2, commits=2)
    checkpoint(config, "silver", offsets=3, commits=2)
    capsys.readouterr()

    status = print_status(spark, config)

    tables = {t["name"]: t for t in status["tables"]}
    assert tables["silver_xray_metadata"]["rows"] == len(metadata)
    assert tables["silver_quarantine"]["rows"] == 3
    assert all(t["exists"] and t["version"] is not None and t["last_modified"] for t in tables.values())
    streams = {s["query"]: s for s in status["streams"]}
    assert streams["bronze"]["last_batch_id"] == 1 and streams["silver"]["last_batch_id"] == 1
    assert streams["silver"]["age_seconds"] > 0
    assert streams["bronze"]["checkpoint"]["committed_batch_id"] == 1
    assert not streams["bronze"]["checkpoint"]["uncommitted"]
    assert streams["silver"]["checkpoint"]["uncommitted"]
    assert streams["silver"]["checkpoint"]["planned_batch_id"] == 2
    assert status["landing_backlog"]["files"] == 1 and status["landing_backlog"]["bytes"] == 2048
    model = status["champion"]
    assert model["version"] == version and status["gold_waiting"] is None
    assert {m["split"] for m in model["metrics"]} >= {"train", "test", "unknown"}
    test_split = next(m for m in model["metrics"] if m["split"] == "test")
    assert test_split["sample_count"] == 20 and 0 <= test_split["accuracy"] <= 1
    assert status["quarantine"] == {"total": 3, "by_rule": {"not_an_image": 2, "image_too_small": 1}}
    feedback = status["feedback"]  # tests/populated.py FEEDBACK; gold holds no champion prediction of them
    assert (feedback["labels"], feedback["readers"], feedback["disputed"]) == (len(shared["feedback"]), 3, 1)
    assert feedback["champion"]["model_version"] == version and feedback["champion"]["images"] == 0

    text = capsys.readouterr().out
    assert f"version {version} (champion)" in text
    assert "not_an_image" in text and "image_too_small" in text
    assert "batch 2 is planned but not committed" in text
    assert f"FEEDBACK  {len(shared['feedback'])} label(s), 3 reader(s)" in text
    gold_line = next(line for line in text.splitlines() if line.strip().startswith("gold "))
    assert gold_line.endswith("in bronze's batches")  # gold has no query of its own in the one-pass plan
    assert max(len(line) for line in text.splitlines()) <= 100

    as_json = print_status(spark, config, as_json=True)
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(as_json))
