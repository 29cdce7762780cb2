"""``xray sql``: read-only SQL over the lakehouse's tables, each by its catalogue name.

By default the query runs in DataFusion, the SQL engine delta-rs ships (``deltalake.QueryBuilder``): no
Spark, no JVM, an answer in about a second. ``--engine spark`` runs Spark SQL over temporary views of the
same names (the Lakehouse's reads, so any Delta engine). Results print as aligned columns (at most
``--limit`` rows; a note on stderr says when more exist), or as CSV or JSON. Mistakes (an unknown table, a
syntax error, a lakehouse without tables) are one line and exit 2.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import decimal
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from streaming.core.config import XrayConfig
from streaming.core.errors import XrayError

__all__ = ["ENGINES", "FORMATS", "SQL_HELP", "QueryResult", "SqlError", "add_sql_arguments", "run_query",
           "sql_command"]

SQL_HELP = "Run a read-only SQL query over the lakehouse tables (by name) and print the result."
ENGINES = ("delta-rs", "spark")
FORMATS = ("table", "csv", "json")
DEFAULT_LIMIT = 100
CELL_WIDTH = 60  # longest cell of the aligned table (features, long messages are cut)
# Statements that would change something: refused before any engine sees them (the rest goes to the engine,
# which names its own syntax errors).
WRITES = frozenset("insert update delete merge create drop alter truncate copy replace vacuum optimize restore "
                   "cache uncache refresh msck load add".split())


class SqlError(XrayError):
    """A query that cannot run: unknown table, bad SQL, nothing to query yet."""


def add_sql_arguments(command: argparse.ArgumentParser) -> None:
    """The options of ``xray sql`` (named by the command table, streaming/cli/table.py)."""
    command.add_argument("query", metavar="SQL", help="the query, e.g. \"SELECT rule, count(*) FROM "
                                                      "silver_quarantine GROUP BY rule\"")
    command.add_argument("--format", choices=FORMATS, default="table",
                         help="aligned columns (default), CSV with a header, or a JSON array of objects")
    command.add_argument("--engine", choices=ENGINES, default="delta-rs",
                         help="delta-rs: DataFusion through delta-rs, no Spark (default); spark: Spark SQL")
    command.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                         help=f"print at most N rows (default {DEFAULT_LIMIT}; 0: all)")


class QueryResult:
    """Column names, Arrow types and rows (Python values) of a query, and whether rows were left out."""

    def __init__(self, table: Any, limit: int):
        self.columns: list[str] = list(table.column_names)
        self.types = [field.type for field in table.schema]
        rows = table.to_pylist()
        self.truncated = bool(limit) and len(rows) > limit
        self.rows: list[dict] = rows[:limit] if limit else rows


# -- engines -------------------------------------------------------------------------------------------
def _tables(config: XrayConfig) -> tuple[list[str], list[str]]:
    """(every catalogue table name, those created in this lakehouse)."""
    from streaming.lakehouse.catalog import ALL_TABLES
    from streaming.lakehouse.tables import table_exists

    names = [spec.name for spec in ALL_TABLES]
    return names, [n for n in names if table_exists(config, n)]


def _mentioned(sql: str, names: Sequence[str]) -> list[str]:
    lowered = sql.lower()
    return [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", lowered)]


def _check_statement(sql: str) -> None:
    words = re.findall(r"[A-Za-z]+", re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S))
    if not words:
        raise SqlError("the query is empty; e.g. xray sql \"SELECT count(*) FROM gold_pneumonia_predictions\"")
    if words[0].lower() in WRITES:
        raise SqlError(f"xray sql only reads (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not {words[0].upper()}; "
                       "tables are written by the xray commands")


def _not_found(message: str) -> str | None:
    """The table an engine says it cannot find, from its message (DataFusion or Spark)."""
    match = (re.search(r"table '(?:[\w]+\.)*([\w]+)' not found", message)
             or re.search(r"table or view `?(?:[\w]+`?\.`?)*([\w]+)`? cannot be found", message, re.I))
    return match.group(1) if match else None


def _engine_error(error: Exception, names: Sequence[str], created: Sequence[str]) -> SqlError:
    message = str(error).strip()
    missing = _not_found(message)
    if missing in names:
        return SqlError(f"table {missing} is not created yet in this lakehouse; run 'xray stream' "
                        f"(and 'xray metrics' for gold_model_performance, gold_dataset_summary) first")
    if missing is not None:
        return SqlError(f"unknown table {missing}; the tables are: {', '.join(created)}")
    first = next((line.strip() for line in message.splitlines() if line.strip()), type(error).__name__)
    first = re.sub(r"^\[[A-Z_.]+\]\s*", "", first)  # Spark's error class prefix
    return SqlError(f"the query failed: {first}")


def _delta_rs(config: XrayConfig, sql: str, names: Sequence[str], created: Sequence[str], limit: int) -> Any:
    import pyarrow as pa

    from streaming.lakehouse.tables import query_builder

    registered = _mentioned(sql, created) if not re.search(r"\bshow\b", sql, re.I) else created
    builder = query_builder(config, registered,
                            {"datafusion.catalog.information_schema": "true"})  # SHOW TABLES, DESCRIBE
    try:
        reader = pa.RecordBatchReader.from_stream(builder.execute(sql))
        batches, rows = [], 0
        for batch in reader:  # stop reading once past the limit: the rest is never computed
            batches.append(batch)
            rows += batch.num_rows
            if limit and rows > limit:
                break
        return pa.Table.from_batches(batches, schema=reader.schema)
    except Exception as error:  # DeltaError, Arrow errors: every failure is one line
        raise _engine_error(error, names, created) from None


def _spark(config: XrayConfig, sql: str, names: Sequence[str], created: Sequence[str], limit: int) -> Any:
    from pyspark.logger import PySparkLogger

    from streaming.lakehouse.engine import Lakehouse
    from streaming.lakehouse.session import get_spark

    # PySpark logs every failed SQL query with its JVM stack on stderr; the error is printed as one line.
    PySparkLogger.getLogger("SQLQueryContextLogger").disabled = True
    spark = get_spark(config)
    lakehouse = Lakehouse(spark, config)
    for name in created:
        lakehouse.read(name).createOrReplaceTempView(name)
    try:
        frame = spark.sql(sql)
        return (frame.limit(limit + 1) if limit else frame).toArrow()
    except Exception as error:  # AnalysisException, ParseException: one line
        raise _engine_error(error, names, created) from None


def run_query(config: XrayConfig, sql: str, engine: str = "delta-rs", limit: int = DEFAULT_LIMIT) -> QueryResult:
    """Run ``sql`` over the lakehouse's tables with ``engine``; at most ``limit`` rows (0: all) are kept."""
    _check_statement(sql)
    names, created = _tables(config)
    if not created:
        raise SqlError(f"the lakehouse {config.root} has no tables yet; run 'xray stream' first "
                       "(or pass --lakehouse DIR)")
    run = _delta_rs if engine == "delta-rs" else _spark
    return QueryResult(run(config, sql, names, created, max(0, limit)), max(0, limit))


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


def _numeric(arrow_type: Any) -> bool:
    import pyarrow.types as t

    return t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type)


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
    lines = format_table(result.columns, cells, [_numeric(t) for t in result.types], indent=0)
    widths = [max(len(x) for x in [name, *(row[i] for row in cells)]) for i, name in enumerate(result.columns)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    count = len(result.rows)
    return "\n".join([*lines, f"({count} row{'' if count == 1 else 's'}{' shown' if result.truncated else ''})"])


def sql_command(args: argparse.Namespace, config: XrayConfig) -> int:
    """``xray sql``: run the query, print the result on stdout, a truncation note on stderr."""
    result = run_query(config, args.query, engine=args.engine, limit=args.limit)
    print(render(result, args.format))
    if result.truncated:
        print(f"xray sql: showing the first {args.limit} rows; --limit N for more, --limit 0 for all "
              "(or aggregate with GROUP BY)", file=sys.stderr)
    return 0
