"""The engine of ``xray sql``: a DataFusion session that can only read the lakehouse's tables.

Read-only by construction, not by looking at the query's text:

* the session (``datafusion.SessionContext``) knows only the lakehouse's Delta tables (registered through
  delta-rs's table provider), ``information_schema`` and DataFusion's built-in generators; it has no
  file-reading table functions (``read_parquet``, ``read_csv`` are not in it) and no URL tables, so a query
  cannot name a path;
* the query is planned with DataFusion's ``SQLOptions`` refusing DDL (``CREATE EXTERNAL TABLE``, views),
  DML (``INSERT``, ``DELETE``, ``COPY ... TO``) and statements (``SET``, ``PREPARE``), wherever they sit in
  the plan, ``EXPLAIN ANALYZE`` and comments included;
* the logical plan is then walked and every node must be a query node (projection, filter, join, scan ...),
  so a plan kind a later DataFusion adds is refused until it is listed here.

DataFusion's execution does not stop for a signal while a CPU-bound operator runs (measured: a 5-way cross
join ignored SIGALRM for over 60 s), so the query runs in a child process (``python -m
streaming.ops.sqlengine``) that ``streaming.ops.sql`` kills on ``--timeout``, Ctrl-C or SIGTERM. The child
reads a pickled request on stdin and writes a pickled answer on stdout.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import XrayError

__all__ = ["QUERY_NODES", "QueryResult", "SqlError", "execute", "worker_main"]

# The logical plan nodes of a query that reads (DataFusion 55's names from LogicalPlan.to_variant()).
QUERY_NODES = frozenset({
    "Projection", "Filter", "WindowExpr", "Aggregate", "Sort", "Join", "Repartition", "Union", "TableScan",
    "EmptyRelation", "Subquery", "SubqueryAlias", "Limit", "Values", "Distinct", "Unnest", "RecursiveQuery",
    "Explain", "Analyze", "DescribeTable",
})
# What the engine's planning error names, as the user wrote it (CamelCase plan names to SQL words).
_REFUSED = re.compile(r"(?:DML|DDL|Statement) not supported: (.+)")


class SqlError(XrayError):
    """A query that cannot run: unknown table, bad SQL, a write, nothing to query yet, too slow."""


class QueryResult:
    """Column names, which are numeric, rows (Python values) of a query, and whether rows were left out."""

    def __init__(self, table: Any, limit: int):
        import pyarrow.types as t

        self.columns: list[str] = list(table.column_names)
        self.numeric = [t.is_integer(f.type) or t.is_floating(f.type) or t.is_decimal(f.type) for f in table.schema]
        rows = table.to_pylist()
        self.truncated = bool(limit) and len(rows) > limit
        self.rows: list[dict] = rows[:limit] if limit else rows


# -- tables --------------------------------------------------------------------------------------------
def _tables(config: XrayConfig) -> tuple[list[str], list[str]]:
    """(every catalogue table name, those created in this lakehouse)."""
    from streaming.lakehouse.catalog import ALL_TABLES
    from streaming.lakehouse.tables import table_exists

    names = [spec.name for spec in ALL_TABLES]
    return names, [n for n in names if table_exists(config, n)]


def _mentioned(sql: str, names: Sequence[str]) -> list[str]:
    """The tables a query may read (opening a table reads its log: only those named are opened)."""
    lowered = sql.lower()
    if re.search(r"\b(show|information_schema)\b", lowered):
        return list(names)
    return [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", lowered)]


def _session(config: XrayConfig, tables: Sequence[str]) -> Any:
    """A DataFusion session holding only ``tables`` (delta-rs's read provider) and information_schema."""
    from datafusion import SessionConfig, SessionContext

    from streaming.lakehouse.tables import open_table

    context = SessionContext(SessionConfig().with_information_schema(True))  # SHOW TABLES, DESCRIBE
    for name in tables:
        context.register_table(name, open_table(config, name))
    return context


# -- planning ------------------------------------------------------------------------------------------
def _read_only_options() -> Any:
    from datafusion import SQLOptions

    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)


def _check_plan(plan: Any) -> None:
    """Every node of the logical plan is a query node; anything else (a write, a command) is refused."""
    pending = [plan]
    while pending:
        node = pending.pop()
        try:
            kind = type(node.to_variant()).__name__
        except Exception:  # noqa: BLE001 - a node the bindings cannot show is not a known query node
            kind = "an unknown plan node"
        if kind not in QUERY_NODES:
            raise _refusal(kind)
        pending.extend(node.inputs())


def _refusal(what: str) -> SqlError:
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", what.strip().rstrip(".")).upper()
    return SqlError(f"xray sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not {words}; "
                    "tables are written by the xray commands")


def _not_found(message: str) -> str | None:
    """The table DataFusion says it cannot find, from its message."""
    match = re.search(r"table '(?:[^']*\.)?([^'.]+)' not found", message)
    return match.group(1) if match else None


def _engine_error(error: Exception, names: Sequence[str], created: Sequence[str]) -> SqlError:
    message = str(error).strip()
    first = next((line.strip() for line in message.splitlines() if line.strip()), type(error).__name__)
    first = re.sub(r"^(DataFusion error: |Error during planning: )+", "", first)
    refused = _REFUSED.search(first)
    if refused:
        return _refusal(refused.group(1))
    if "No SQL statements were provided" in first:
        return SqlError("the query is empty; e.g. xray sql \"SELECT count(*) FROM gold_pneumonia_predictions\"")
    missing = _not_found(first)
    if missing in names:
        return SqlError(f"table {missing} is not created yet in this lakehouse; run 'xray stream' "
                        f"(and 'xray metrics' for gold_model_performance, gold_dataset_summary) first")
    if missing is not None:
        return SqlError(f"unknown table {missing}; the tables are: {', '.join(created)}")
    return SqlError(f"the query failed: {first}")


# -- execution -----------------------------------------------------------------------------------------
def execute(config: XrayConfig, sql: str, limit: int) -> QueryResult:
    """Plan ``sql`` read-only over the lakehouse's tables and run it here; at most ``limit`` rows (0: all).

    In this process: it cannot be stopped while DataFusion computes; ``streaming.ops.sql.run_query`` runs it
    in a child process that can be.
    """
    import pyarrow as pa

    if not sql.strip():
        raise _engine_error(ValueError("No SQL statements were provided"), (), ())
    names, created = _tables(config)
    if not created:
        raise SqlError(f"the lakehouse {config.root} has no tables yet; run 'xray stream' first "
                       "(or pass --lakehouse DIR)")
    context = _session(config, _mentioned(sql, created))
    try:
        frame = context.sql_with_options(sql, _read_only_options())
    except Exception as error:  # noqa: BLE001 - parse and plan errors of the user's query: one line
        raise _engine_error(error, names, created) from None
    _check_plan(frame.logical_plan())
    try:
        batches, rows = [], 0
        for batch in frame.execute_stream():  # stop once past the limit: the rest is never computed
            batches.append(batch.to_pyarrow())
            rows += batches[-1].num_rows
            if limit and rows > limit:
                break
        schema = batches[0].schema if batches else frame.schema()
        return QueryResult(pa.Table.from_batches(batches, schema=schema), limit)
    except Exception as error:  # noqa: BLE001 - execution errors (casts, overflow): one line
        raise _engine_error(error, names, created) from None


# -- the child process ---------------------------------------------------------------------------------
def _watch_parent(parent: int, deadline: float) -> None:
    """End this child when its parent is gone (killed with -9) or well past the query's deadline."""
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.5)
    os._exit(3)


def worker_main() -> None:
    """``python -m streaming.ops.sqlengine``: read (config, sql, limit, timeout) pickled on stdin, write
    ("ok", QueryResult) or ("error", message) pickled on stdout, and end without interpreter shutdown."""
    # The parent decides on Ctrl-C and SIGTERM (it kills this process): a stop is one line, said once.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answer = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answer
    config, sql, limit, timeout = pickle.load(sys.stdin.buffer)
    deadline = time.monotonic() + (timeout + 30 if timeout else float("inf"))
    threading.Thread(target=_watch_parent, args=(os.getppid(), deadline), daemon=True).start()
    try:
        outcome: tuple[str, Any] = ("ok", execute(config, sql, limit))
    except XrayError as error:
        outcome = ("error", str(error))
    except Exception:  # a bug: its traceback for the parent to show, and an exit code that says so
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    with os.fdopen(answer, "wb") as out:
        pickle.dump(outcome, out)
    sys.stderr.flush()
    # A process that read Delta tables may abort in interpreter shutdown (native threads): exit directly.
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover - run by streaming.ops.sql in a child process
    # Through the module's own name, so the answer pickles as streaming.ops.sqlengine.QueryResult.
    from streaming.ops.sqlengine import worker_main as main

    main()
