"""``xray sql``: read-only SQL over the lakehouse's tables, each by its catalogue name.

The query runs in DataFusion over delta-rs's tables (``streaming.ops.sqlengine``: read-only by
construction, no Spark, no JVM), in a child process this module kills when ``--timeout`` passes (default
``sql_timeout_seconds``, 60 s) or on Ctrl-C or SIGTERM: a query never outlives the command. Results print
as aligned columns (at most ``--limit`` rows; a note on stderr says when more exist), or as CSV or JSON.
Mistakes (an unknown table, a syntax error, a write, a lakehouse without tables) are one line and exit 2.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import decimal
import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from streaming.core.config import XrayConfig
from streaming.ops.sqlengine import QueryResult, SqlError

__all__ = ["ENGINES", "FORMATS", "SQL_HELP", "QueryResult", "SqlError", "add_sql_arguments", "run_query",
           "sql_command"]

SQL_HELP = "Run a read-only SQL query over the lakehouse tables (by name) and print the result."
ENGINES = ("delta-rs", "spark")  # spark: refused with one line (removed: it could read and write any file)
FORMATS = ("table", "csv", "json")
DEFAULT_LIMIT = 100
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # where `streaming` is imported from
CELL_WIDTH = 60  # longest cell of the aligned table (features, long messages are cut)
SPARK_REMOVED = ("--engine spark was removed: Spark SQL reads any file (text.`/etc/passwd`) and writes outside "
                 "the lakehouse (INSERT OVERWRITE DIRECTORY); xray sql runs DataFusion only, read-only by "
                 "construction: drop --engine and write the query in DataFusion's SQL")


def _seconds(text: str) -> float:
    """A --timeout: a number of seconds >= 0 (argparse prints the error as one usage line)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0 (0: no limit), not {text!r}")
    return seconds


def add_sql_arguments(command: argparse.ArgumentParser) -> None:
    """The options of ``xray sql`` (named by the command table, streaming/cli/table.py)."""
    command.add_argument("query", metavar="SQL", help="the query, e.g. \"SELECT rule, count(*) FROM "
                                                      "silver_quarantine GROUP BY rule\"")
    command.add_argument("--format", choices=FORMATS, default="table",
                         help="aligned columns (default), CSV with a header, or a JSON array of objects")
    command.add_argument("--engine", choices=ENGINES, default="delta-rs",
                         help="delta-rs: DataFusion through delta-rs, no Spark (the only engine; spark was "
                              "removed: it could read and write files outside the lakehouse)")
    command.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                         help=f"print at most N rows (default {DEFAULT_LIMIT}; 0: all)")
    command.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                         help="stop the query after SECONDS (default: sql_timeout_seconds, 60; 0: no limit)")


# -- running -------------------------------------------------------------------------------------------
def _stop(child: subprocess.Popen) -> None:
    """Kill the query's process: it only reads, so nothing is left half-done."""
    child.kill()
    child.communicate()


def run_query(config: XrayConfig, sql: str, engine: str = "delta-rs", limit: int = DEFAULT_LIMIT,
              timeout: float | None = None) -> QueryResult:
    """Run ``sql`` over the lakehouse's tables; at most ``limit`` rows (0: all) are kept.

    The query runs in a child process (``streaming.ops.sqlengine``), killed after ``timeout`` seconds
    (None: ``config.sql_timeout_seconds``; 0: no limit) or when this process is interrupted
    (KeyboardInterrupt, ``Terminated``), which is then raised again.
    """
    if engine != "delta-rs":
        raise SqlError(SPARK_REMOVED)
    seconds = config.sql_timeout_seconds if timeout is None else timeout
    request = pickle.dumps((config, sql, max(0, limit), seconds))
    # Its own session: a terminal's Ctrl-C reaches this process only, which stops the child. It starts in
    # the folder holding this `streaming` package, so `-m` finds this code, never a `streaming/` folder
    # where the user happens to be.
    child = subprocess.Popen([sys.executable, "-m", "streaming.ops.sqlengine"], cwd=PACKAGE_PARENT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        answer, errors = child.communicate(request, timeout=seconds or None)
    except subprocess.TimeoutExpired:
        _stop(child)
        raise SqlError(f"the query was stopped after {seconds:g} s (--timeout, sql_timeout_seconds); narrow it "
                       "(WHERE, LIMIT, fewer joins) or give it more time with --timeout SECONDS") from None
    except BaseException:  # Ctrl-C, SIGTERM (Terminated): stop the query, then end as the signal asks
        _stop(child)
        raise
    if child.returncode == -signal.SIGKILL:  # the kernel's out-of-memory killer, or an operator
        raise SqlError("the query's process was killed (SIGKILL: out of memory?); narrow the query (WHERE, "
                       "LIMIT, fewer joins)")
    if child.returncode != 0 or not answer:
        raise RuntimeError(f"xray sql's query process failed (exit {child.returncode}):\n"
                           f"{errors.decode(errors='replace')}")
    sys.stderr.write(errors.decode(errors="replace"))  # a library's warning, if any: never hidden
    kind, value = pickle.loads(answer)
    if kind == "error":
        raise SqlError(value)
    return value


# -- output --------------------------------------------------------------------------------------------
def _value(value: Any) -> Any:
    """A JSON/CSV-friendly value: times in ISO 8601 (UTC as Z), bytes in base64, decimals as floats."""
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):  # an Arrow map
            return {str(k): _value(v) for k, v in value}
        return [_value(item) for item in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return _value(value).replace("T", " ")
    text = json.dumps(_value(value), default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= CELL_WIDTH else text[:CELL_WIDTH - 3] + "..."


def render(result: QueryResult, fmt: str = "table") -> str:
    """The result as aligned columns (with a row count), CSV, or a JSON array."""
    if fmt == "json":
        rows = [{k: _value(v) for k, v in row.items()} for row in result.rows]
        return "[" + ",\n ".join(json.dumps(row, default=str) for row in rows) + "]"
    if fmt == "csv":
        import io

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            values = [_value(row[c]) for c in result.columns]
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, (list, dict)) else v
                             for v in values])
        return buffer.getvalue().rstrip("\n")
    from streaming.ops.text import format_table

    cells = [[_cell(row[c]) for c in result.columns] for row in result.rows]
    lines = format_table(result.columns, cells, result.numeric, indent=0)
    widths = [max(len(x) for x in [name, *(row[i] for row in cells)]) for i, name in enumerate(result.columns)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    count = len(result.rows)
    return "\n".join([*lines, f"({count} row{'' if count == 1 else 's'}{' shown' if result.truncated else ''})"])


class _Stopped(BaseException):  # noqa: N818 - like KeyboardInterrupt: a request to end, not an error
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> Any:
    """Ctrl-C and SIGTERM raise `_Stopped` while the query runs (run_query then kills it); the restorer."""
    def stop(signum, frame):  # noqa: ANN001, ARG001
        raise _Stopped(signum)

    try:
        previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (main() embedded): the caller's handling stays
        return lambda: None
    return lambda: [signal.signal(s, signal.SIG_DFL if h is None else h) for s, h in previous.items()]


def sql_command(args: argparse.Namespace, config: XrayConfig) -> int:
    """``xray sql``: run the query, print the result on stdout, a truncation note on stderr."""
    restore = _stop_on_signals()
    try:
        result = run_query(config, args.query, engine=args.engine, limit=args.limit, timeout=args.timeout)
    except _Stopped as stop:
        how = "interrupted (Ctrl-C)" if stop.signum == signal.SIGINT else "terminated (SIGTERM)"
        print(f"xray sql: {how}; the query was stopped", file=sys.stderr)
        return 128 + stop.signum  # 130, 143: streaming/cli/exits.py
    finally:
        restore()
    print(render(result, args.format))
    if result.truncated:
        print(f"xray sql: showing the first {args.limit} rows; --limit N for more, --limit 0 for all "
              "(or aggregate with GROUP BY)", file=sys.stderr)
    return 0
