"""``xray sql`` on a small lakehouse: DataFusion (no Spark), one-line errors (the read-only guarantee and stops:
test_sql_readonly.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from populated import T0, ops_rows

from streaming.cli.commands import main
from streaming.ops.sql import SqlError, render, run_query

REPO = Path(__file__).resolve().parents[3]
PER_DAY = ("SELECT date_trunc('day', predicted_time) AS day, predicted_label, count(*) AS predictions "
           "FROM gold_pneumonia_predictions GROUP BY 1, 2 ORDER BY 1, 2")


@pytest.fixture
def small(lakehouse):
    """Quarantine rows, pipeline events, 16 predictions over 6 h from T0, and one metrics row."""
    ops_rows(lakehouse)
    lakehouse.append_rows("gold_model_performance", [
        {"model_name": "m", "model_version": "1", "split": split, "accuracy": accuracy, "roc_auc": 0.9,
         "sample_count": 20, "evaluated_time": T0}
        for split, accuracy in (("train", 1.0), ("test", 0.75))
    ])
    return lakehouse


def xray(config, *args: str) -> int:
    return main(["sql", "--lakehouse", str(config.root), *args])


@pytest.mark.engine_dependent
def test_an_aligned_table_without_spark(small, config, no_spark, capsys):
    code = xray(config, "SELECT rule, count(*) AS files FROM silver_quarantine GROUP BY rule ORDER BY files DESC")
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == ["rule             files",
                   "---------------  -----",
                   "not_an_image         2",
                   "image_too_small      1",
                   "(2 rows)"]


@pytest.mark.engine_dependent
def test_predictions_per_day_csv_and_json(small, config, no_spark, capsys):
    assert xray(config, "--format", "csv", PER_DAY) == 0
    assert capsys.readouterr().out.splitlines() == [
        "day,predicted_label,predictions",
        "2024-05-01T00:00:00Z,NORMAL,8",
        "2024-05-01T00:00:00Z,PNEUMONIA,8",
    ]
    assert xray(config, "--format", "json", "SELECT split, accuracy, evaluated_time FROM gold_model_performance "
                                            "ORDER BY split") == 0
    assert json.loads(capsys.readouterr().out) == [
        {"split": "test", "accuracy": 0.75, "evaluated_time": "2024-05-01T08:00:00Z"},
        {"split": "train", "accuracy": 1.0, "evaluated_time": "2024-05-01T08:00:00Z"},
    ]


def test_the_limit_says_when_rows_are_left_out(small, config, no_spark, capsys):
    assert xray(config, "--limit", "5", "SELECT prediction_id FROM gold_pneumonia_predictions") == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2 + 5 + 1 and captured.out.endswith("(5 rows shown)\n")
    assert "showing the first 5 rows" in captured.err
    assert xray(config, "--limit", "0", "SELECT prediction_id FROM gold_pneumonia_predictions") == 0
    captured = capsys.readouterr()
    assert captured.out.endswith("(16 rows)\n") and captured.err == ""


def test_cells_are_shortened_and_typed(small, config, no_spark):
    result = run_query(config, "SELECT 'x' AS s, CAST(NULL AS INT) AS n, 0.123456789 AS f, repeat('a', 100) AS long")
    text = render(result).splitlines()
    assert text[2].startswith("x  NULL  0.123457  aaaa") and text[2].endswith("...")


@pytest.mark.parametrize("sql, expected", [
    ("SELECT * FROM gold_predictions", "unknown table gold_predictions; the tables are: bronze_xray_images, "),
    ("SELEC 1", "the query failed: SQL error: ParserError(\"Expected: an SQL statement, found: SELEC"),
    ("SELECT nope FROM silver_quarantine", "the query failed: Schema error: No field named nope."),
    ("DELETE FROM silver_quarantine", "xray sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not DELETE"),
    ("  -- nothing\n", "the query is empty"),
])
def test_mistakes_are_one_line_exit_2(small, config, no_spark, capsys, sql, expected):
    assert xray(config, sql) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"xray sql: error: {expected}")


def test_an_empty_lakehouse_and_a_table_not_created_yet(spark, config, no_spark):
    with pytest.raises(SqlError, match=r"has no tables yet; run 'xray stream' first"):
        run_query(config, "SELECT * FROM silver_quarantine")
    from streaming.lakehouse.catalog import TABLES_BY_NAME
    from streaming.lakehouse.engine import Lakehouse

    Lakehouse(spark, config).ensure_tables((TABLES_BY_NAME["silver_quarantine"],))
    with pytest.raises(SqlError, match=r"table gold_model_performance is not created yet.*run 'xray stream'"):
        run_query(config, "SELECT * FROM gold_model_performance")
    assert run_query(config, "SELECT count(*) AS n FROM silver_quarantine").rows == [{"n": 0}]


def test_the_command_never_imports_pyspark(small, config):
    """The whole command in a fresh interpreter: no pyspark module, so no JVM, ever."""
    code = ("import sys; from streaming.cli.commands import main; "
            f"rc = main(['sql', '--lakehouse', {str(config.root)!r}, 'SELECT count(*) AS n FROM pipeline_events']); "
            "assert 'pyspark' not in sys.modules, 'pyspark imported'; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["n", "-", "4", "(1 row)"]
