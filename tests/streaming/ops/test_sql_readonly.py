"""``xray sql`` is read-only by construction and never outlives its command (issue 24, rows 4-7).

Each attack is refused with one line (exit 2) and leaves nothing behind: no file outside the lakehouse, the
Delta log as it was, gold still reading its rows. A query too slow is stopped by --timeout, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from populated import T0, ops_rows

from streaming.cli.commands import main
from streaming.ops.sql import run_query
from streaming.ops.sqlengine import SqlError, _check_plan

REPO = Path(__file__).resolve().parents[3]
GOLD = "gold_pneumonia_predictions"
READS_ONLY = "xray sql: error: xray sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not "
# Five copies of gold (16 rows) and a million-row series: 10^12 rows, hours of work for any engine.
CROSS_JOIN = ("SELECT sum(length(a.image_id) + length(b.image_id) + length(c.image_id) + length(d.image_id) "
              f"+ length(e.image_id) + g.value) FROM {GOLD} a, {GOLD} b, {GOLD} c, {GOLD} d, {GOLD} e, "
              "generate_series(1, 1000000) g")


@pytest.fixture
def filled(lakehouse):
    """Gold predictions, quarantine rows, events, and one bronze image with its raw path and bytes."""
    ops_rows(lakehouse)
    lakehouse.append_rows("bronze_xray_images", [
        {"path": "file:///landing/Jane_Doe_1961/chest.png", "file_name": "chest.png", "path_ref": "ref0",
         "size_bytes": 4, "modification_time": T0, "content": b"\x89PNG", "content_status": "ok",
         "ingest_time": T0 + dt.timedelta(seconds=1), "batch_id": 0},
    ])
    return lakehouse


def xray(config, *args: str) -> int:
    return main(["sql", "--lakehouse", str(config.root), *args])


def refused_in_one_line(capsys, code: int, starts: str) -> str:
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    assert captured.err.count("\n") == 1 and captured.err.startswith(starts), captured.err
    assert "root:x:0:0" not in captured.err and "Traceback" not in captured.err
    return captured.err


def log_state(config) -> dict[str, str]:
    """Every file of gold's Delta log, with a digest of its bytes."""
    log = config.table_path(GOLD) / "_delta_log"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(log.rglob("*")) if p.is_file()}


def gold_rows(config) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(config.table_path(GOLD))).to_pyarrow_table().num_rows


# -- row 4: raw paths and image bytes copied out of the lakehouse ------------------------------------------
@pytest.mark.parametrize("prefix", ["", "/* /* */ SELECT */ ", "-- SELECT\n", "/* SELECT */ "])
def test_explain_analyze_copy_of_bronze_writes_nothing(filled, config, tmp_path, capsys, no_spark, prefix):
    target = tmp_path / "outside" / "x.parquet"
    sql = f"{prefix}EXPLAIN ANALYZE COPY (SELECT path, content FROM bronze_xray_images) TO '{target}'"
    refused_in_one_line(capsys, xray(config, sql), READS_ONLY + "COPY")
    assert not target.exists() and not target.parent.exists()
    assert not any((config.root).rglob("x.parquet"))


# -- row 5: a forged Delta commit that would remove gold's file --------------------------------------------
def test_a_forged_delta_commit_is_refused_and_gold_keeps_its_rows(filled, config, capsys, no_spark):
    from deltalake import DeltaTable

    gold = DeltaTable(str(config.table_path(GOLD)))
    data_file = gold.file_uris()[0].rsplit("/", 1)[-1]
    forged = config.table_path(GOLD) / "_delta_log" / f"{gold.version() + 1:020d}.json"
    before, rows = log_state(config), gold_rows(config)
    assert rows == 16
    sql = (f"EXPLAIN ANALYZE COPY (SELECT named_struct('path', '{data_file}', 'deletionTimestamp', 1, "
           f"'dataChange', true) AS remove) TO '{forged}' STORED AS JSON")
    refused_in_one_line(capsys, xray(config, sql), READS_ONLY + "COPY")
    assert not forged.exists()
    assert log_state(config) == before and gold_rows(config) == rows
    assert run_query(config, f"SELECT count(*) AS n FROM {GOLD}").rows == [{"n": 16}]


# -- any other write, command, or file named from SQL ------------------------------------------------------
@pytest.mark.parametrize("sql, starts", [
    (f"INSERT INTO {GOLD} SELECT * FROM {GOLD}", READS_ONLY + "INSERT INTO"),
    (f"EXPLAIN ANALYZE INSERT INTO {GOLD} SELECT * FROM {GOLD}", READS_ONLY + "INSERT INTO"),
    (f"DELETE FROM {GOLD}", READS_ONLY + "DELETE"),
    (f"UPDATE {GOLD} SET model_version = '2'", READS_ONLY + "UPDATE"),
    (f"DROP TABLE {GOLD}", READS_ONLY + "DROP TABLE"),
    ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", READS_ONLY + "CREATE EXTERNAL TABLE"),
    ("CREATE VIEW v AS SELECT 1", READS_ONLY + "CREATE VIEW"),
    ("SET datafusion.execution.batch_size = 1", READS_ONLY + "SET VARIABLE"),
    ("SELECT * FROM '/etc/passwd'", "xray sql: error: unknown table /etc/passwd"),
    ("SELECT * FROM read_csv('/etc/passwd')", "xray sql: error: the query failed: table function 'read_csv' not"),
    ("SELECT * FROM read_parquet('/etc/passwd')", "xray sql: error: the query failed: table function 'read_parquet'"),
    ("SELECT 1; COPY (SELECT 1) TO '/tmp/sql-readonly-never.csv'", "xray sql: error: the query failed: "),
])
def test_writes_commands_and_paths_are_refused(filled, config, capsys, no_spark, sql, starts):
    before = log_state(config)
    refused_in_one_line(capsys, xray(config, sql), starts)
    assert log_state(config) == before and gold_rows(config) == 16
    assert not Path("/tmp/sql-readonly-never.csv").exists()


def test_the_plan_walk_refuses_a_write_even_past_the_sql_options(tmp_path):
    """Second line of defence: a plan planned without the options (a later DataFusion's gap) is refused."""
    from datafusion import SessionContext

    target = tmp_path / "x.parquet"
    for sql in (f"COPY (SELECT 1 AS a) TO '{target}'", f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{target}'"):
        plan = SessionContext().sql(sql).logical_plan()  # planned, not run
        with pytest.raises(SqlError, match=r"only reads .*, not COPY TO;"):
            _check_plan(plan)
    _check_plan(SessionContext().sql("SELECT 1 AS a").logical_plan())
    assert not target.exists()


# -- row 6: Spark SQL read any file and wrote outside the lakehouse ----------------------------------------
@pytest.mark.parametrize("engine", [["--engine", "spark"], []])
def test_the_spark_engine_attacks_are_refused(filled, config, tmp_path, capsys, no_spark, engine):
    outside = tmp_path / "outside"
    for sql in ("SELECT value FROM text.`/etc/passwd`",
                f"INSERT OVERWRITE DIRECTORY '{outside / 'dir'}' SELECT * FROM {GOLD}",
                f"CREATE TABLE stolen (a INT) LOCATION '{outside / 'table'}'"):
        error = refused_in_one_line(capsys, xray(config, *engine, sql), "xray sql: error: ")
        if engine:
            assert "--engine spark was removed" in error
    assert not outside.exists() and log_state(config) and gold_rows(config) == 16


# -- what still works ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sql, rows", [
    (f"SELECT p.predicted_label, count(*) AS n FROM {GOLD} p JOIN {GOLD} q ON p.image_id = q.image_id "
     "GROUP BY 1 ORDER BY 1", [{"predicted_label": "NORMAL", "n": 8}, {"predicted_label": "PNEUMONIA", "n": 8}]),
    (f"WITH recent AS (SELECT * FROM {GOLD} WHERE predicted_time >= (SELECT max(predicted_time) FROM {GOLD}) "
     "- INTERVAL '90 minutes') SELECT count(*) AS n FROM recent", [{"n": 4}]),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT sum(n) AS s FROM r",
     [{"s": 6}]),
    (f"SELECT count(DISTINCT predicted_label) AS labels, max(rank) AS top FROM (SELECT predicted_label, "
     f"rank() OVER (ORDER BY predicted_time) AS rank FROM {GOLD})", [{"labels": 2, "top": 16}]),
    ("SELECT count(*) AS n FROM bronze_xray_images WHERE path_ref IN (SELECT 'ref0') UNION ALL SELECT 0 "
     "ORDER BY n DESC",
     [{"n": 1}, {"n": 0}]),
])
def test_read_only_queries_still_answer(filled, config, no_spark, sql, rows):
    assert run_query(config, sql).rows == rows


def test_explain_show_and_describe_still_answer(filled, config, no_spark):
    assert run_query(config, f"EXPLAIN ANALYZE SELECT count(*) FROM {GOLD}").rows
    assert run_query(config, f"EXPLAIN SELECT * FROM {GOLD}").rows
    assert {"table_name": GOLD} in [{"table_name": r["table_name"]} for r in run_query(config, "SHOW TABLES").rows]
    assert "predicted_label" in [r["column_name"] for r in run_query(config, f"DESCRIBE {GOLD}").rows]


# -- row 7: a query that would run for hours ---------------------------------------------------------------
def test_a_cross_join_is_stopped_by_the_timeout(filled, config, capsys, no_spark):
    refused_in_one_line(capsys, xray(config, "--timeout", "3", CROSS_JOIN),
                        "xray sql: error: the query was stopped after 3 s (--timeout, sql_timeout_seconds)")
    with pytest.raises(SqlError, match=r"stopped after 2 s"):
        run_query(config.with_overrides(sql_timeout_seconds=2), CROSS_JOIN)


def _query_process(pid: int, deadline: float) -> int:
    """The child process running the query (`python -m streaming.ops.sqlengine`) of the `xray sql` ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        for child in children.read_text().split():
            if b"streaming.ops.sqlengine" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        time.sleep(0.2)
    raise AssertionError("xray sql started no query process")


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (one killed whose parent is gone waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _start_cross_join(config) -> tuple[subprocess.Popen, int]:
    """`xray sql` running the cross join without a timeout in a fresh interpreter, and its query process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", "import sys; from streaming.cli.commands import main; sys.exit(main())",
               "sql", "--lakehouse", str(config.root), "--timeout", "0", CROSS_JOIN]
    xray_sql = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        worker = _query_process(xray_sql.pid, time.monotonic() + 120)
    except BaseException:
        xray_sql.kill()
        raise
    time.sleep(1)  # the query is planned and running
    return xray_sql, worker


PROC_CHILDREN = pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                                   reason="needs Linux /proc/<pid>/task/<tid>/children to find the query's process")


@PROC_CHILDREN
@pytest.mark.parametrize("signum, code, said", [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_stops_a_running_cross_join(filled, config, signum, code, said):
    xray_sql, worker = _start_cross_join(config)
    try:
        xray_sql.send_signal(signum)
        out, err = xray_sql.communicate(timeout=60)
    finally:
        xray_sql.kill()
    assert xray_sql.returncode == code, err
    assert out == "" and err == f"xray sql: {said}; the query was stopped\n"
    assert not _running(worker)  # killed and reaped, not left computing


@PROC_CHILDREN
def test_the_query_ends_with_its_command_killed_by_sigkill(filled, config):
    """`kill -9` of `xray sql` leaves no orphan computing: the query process watches its parent."""
    xray_sql, worker = _start_cross_join(config)
    xray_sql.kill()
    xray_sql.communicate(timeout=60)
    deadline = time.monotonic() + 60
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker)



@PROC_CHILDREN
def test_a_query_process_killed_under_it_is_one_line(filled, config):
    """The kernel's out-of-memory killer ends the query's process: `xray sql` says so in one line, exit 2."""
    xray_sql, worker = _start_cross_join(config)
    try:
        os.kill(worker, signal.SIGKILL)
        out, err = xray_sql.communicate(timeout=60)
    finally:
        xray_sql.kill()
    assert xray_sql.returncode == 2 and out == ""
    assert err == ("xray sql: error: the query's process was killed (SIGKILL: out of memory?); narrow the query "
                   "(WHERE, LIMIT, fewer joins)\n")

@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_a_timeout_is_a_number_of_seconds(config, capsys, value):
    with pytest.raises(SystemExit) as stop:
        xray(config, "--timeout", value, "SELECT 1")
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"xray sql: error: argument --timeout: expected a number of seconds >= 0 (0: no limit), not {value!r} "
        "(see xray sql --help)")
