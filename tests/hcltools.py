"""Reading the Terraform under infra/ for the offline checks (tests/infra/): python-hcl2 ≥ 7 output
normalised (block labels unquoted), blocks, resources, variables and locals, Terraform interpolations
resolved from variable defaults, job tasks run through the real ``xray`` parser, and the SQL alerts' column
check against the catalogue."""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import re
from collections.abc import Iterator
from typing import Any

import hcl2
from support import REPO

from streaming.cli.commands import build_parser
from streaming.lakehouse.catalog import TABLES_BY_NAME

INFRA = REPO / "infra"
SENSITIVE_VARIABLES = {"kaggle_username", "kaggle_key", "patient_id_salt", "alert_webhook_url"}
PLACEHOLDER = "0"  # stands for a Terraform expression the checks cannot evaluate (valid for str/int/float)

# ---- parsing helpers ---------------------------------------------------------------------------------

_META_KEYS = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('\\"', '"')
    return text


def _normalize(value: Any) -> Any:
    """python-hcl2 output without format noise: unquoted keys/strings, no metadata keys.

    Literal strings come back as plain text; expressions as ``${...}`` (templates keep their ``${...}``).
    """
    if isinstance(value, dict):
        return {_unquote(k): _normalize(v) for k, v in value.items() if k not in _META_KEYS}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def load_hcl(text: str) -> dict[str, Any]:
    """Parse HCL text into normalized dicts (blocks are lists of dicts, as python-hcl2 gives them)."""
    try:
        from hcl2.utils import SerializationOptions  # python-hcl2 >= 8
    except ImportError:  # pragma: no cover - older python-hcl2 already strips quotes
        return _normalize(hcl2.loads(text))
    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, preserve_heredocs=False, strip_string_quotes=True
    )
    return _normalize(hcl2.loads(text, serialization_options=options))


def load_infra() -> dict[str, dict[str, Any]]:
    """Every .tf file of infra/, parsed, by file name."""
    return {path.name: load_hcl(path.read_text()) for path in sorted(INFRA.glob("*.tf"))}


def blocks(docs: dict[str, dict[str, Any]], kind: str) -> Iterator[dict[str, Any]]:
    for doc in docs.values():
        yield from doc.get(kind, [])


def resources(docs: dict[str, dict[str, Any]], rtype: str | None = None) -> Iterator[tuple[str, str, dict]]:
    """(type, name, body) of every resource, optionally of one type."""
    for block in blocks(docs, "resource"):
        for res_type, named in block.items():
            for name, body in named.items():
                if rtype is None or res_type == rtype:
                    yield res_type, name, body


def variables(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in blocks(docs, "variable"):
        found.update(block)
    return found


def locals_(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for block in blocks(docs, "locals"):
        found.update(block)
    return found


def one(value: Any) -> Any:
    """A nested block (a one-element list) as its dict; None when absent."""
    if isinstance(value, list):
        assert len(value) <= 1, f"expected at most one block, got {value!r}"
        return value[0] if value else None
    return value


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) of every scalar in a parsed structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}[{index}]")
    else:
        yield path, value


def interpolations(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, inner expression) of each top-level ``${...}`` in a string, nested braces included."""
    index = 0
    while True:
        start = text.find("${", index)
        if start < 0:
            return
        depth, pos, quote = 0, start + 1, False
        while pos < len(text):
            char = text[pos]
            if char == '"' and text[pos - 1] != "\\":
                quote = not quote
            elif not quote and char == "{":
                depth += 1
            elif not quote and char == "}":
                depth -= 1
                if depth == 0:
                    break
            pos += 1
        yield start, pos + 1, text[start + 2 : pos]
        index = pos + 1


def resolve(text: str, variables_: dict[str, dict], locals_map: dict[str, Any], depth: int = 0) -> str:
    """Replace Terraform interpolations by values the checks can know.

    ``${var.x}`` becomes the variable's default, ``${local.y}`` the local when it is a plain string (resolved
    in turn), ``tostring(...)`` of either the same; any other expression becomes PLACEHOLDER.
    """
    out, last = [], 0
    for start, end, expr in interpolations(text):
        out.append(text[last:start])
        last = end
        expr = expr.strip()
        wrapped = re.fullmatch(r"tostring\((.*)\)", expr)
        if wrapped:
            expr = wrapped.group(1).strip()
        ref = re.fullmatch(r"(var|local)\.([A-Za-z_][\w-]*)", expr)
        value: Any = None
        if ref and depth < 10:
            kind, name = ref.groups()
            value = variables_.get(name, {}).get("default") if kind == "var" else locals_map.get(name)
        if isinstance(value, bool):
            out.append(str(value).lower())
        elif isinstance(value, (int, float)):
            out.append(str(value))
        elif isinstance(value, str) and (not value.startswith("${") or depth < 9):
            out.append(resolve(value, variables_, locals_map, depth + 1))
        else:
            out.append(PLACEHOLDER)
    out.append(text[last:])
    return "".join(out)


def parse_cli(argv: list[str]) -> tuple[argparse.Namespace | None, str | None]:
    """Parse an ``xray`` command line with the real parser: (namespace, None) or (None, argparse's error)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(argv), None
    except SystemExit:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        return None, lines[-1] if lines else "rejected by the xray parser"


def setup_metadata() -> tuple[str, str, str]:
    """(distribution name, version, console_scripts text) from setup.cfg."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return (
        config["metadata"]["name"],
        config["metadata"]["version"],
        config["options.entry_points"]["console_scripts"],
    )


def normalize_dist(name: str) -> str:
    """PEP 503/427 normalization: what wheel file names and installers compare."""
    return re.sub(r"[-_.]+", "_", name).lower()


def job_tasks(docs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict, dict]]:
    """(job name, job body, task) of every task of every databricks_job."""
    for _, name, body in resources(docs, "databricks_job"):
        for task in body.get("task", []):
            yield name, body, task


def table_layer(table: str) -> str | None:
    """The layer (= SQL schema) of a table the service declares, else None."""
    return TABLES_BY_NAME[table].layer if table in TABLES_BY_NAME else None


def table_columns(table: str) -> set[str] | None:
    """Column names of a table the catalogue declares, else None."""
    return set(TABLES_BY_NAME[table].column_names) if table in TABLES_BY_NAME else None


# What the alert queries may say besides column names: keywords and functions of Databricks SQL. Kept short
# on purpose: a word added here can no longer be caught as a misspelt column.
_SQL_WORDS = frozenset("""
    select from where and or not is null as case when then else end interval hour minute day days
    coalesce nullif count sum max min max_by timestampdiff current_timestamp
""".split())
_QUALIFIED_TABLE = re.compile(r"\$\{local\.catalog_name\}\.(\w+)\.(\w+)")


def check_alert_query(sql: str) -> tuple[list[str], set[str]]:
    """(problems, output column names) of one SQL alert query.

    Tables are named ``${local.catalog_name}.<layer>.<table>`` and must be declared in their layer; every
    other word must be a column of those tables or one of _SQL_WORDS; ``AS name`` gives the output names.
    """
    problems = []
    text = re.sub(r"'[^']*'", "''", sql)  # literals are values, not names
    tables = _QUALIFIED_TABLE.findall(text)
    if not tables:
        problems.append("reads no ${local.catalog_name}.<layer>.<table>")
    known: set[str] = set()
    for schema, table in tables:
        columns = table_columns(table)
        if columns is None:
            problems.append(f"unknown table {table}")
            continue
        if schema != table_layer(table):
            problems.append(f"{table} is in schema {table_layer(table)}, not {schema}")
        known |= columns
    text = _QUALIFIED_TABLE.sub(" ", text)
    if "${" in text:
        problems.append("interpolates something other than the catalog (thresholds belong to the alert)")
    outputs = set(re.findall(r"\bAS\s+(\w+)", text, flags=re.IGNORECASE))
    text = re.sub(r"\bAS\s+\w+", " ", text, flags=re.IGNORECASE)  # an alias never makes a name valid
    for word in re.findall(r"\b[A-Za-z_]\w*", text):
        if word.lower() not in _SQL_WORDS and word not in known:
            problems.append(f"unknown column or word {word!r}")
    return sorted(set(problems)), outputs


# ---- the checker the tests (and anyone editing infra/) rely on -------------------------------------


def check_wheel_tasks(docs: dict[str, dict[str, Any]], package_name: str | None = None) -> list[str]:
    """Problems of the python_wheel_task of every job: entry point, package and CLI-valid parameters.

    Parameters are resolved (see `resolve`) and parsed by ``streaming.cli.build_parser()``; an unknown
    option, a bad choice or a missing subcommand is reported with argparse's own message.
    """
    package_name = package_name or setup_metadata()[0]
    variables_, locals_map = variables(docs), locals_(docs)
    problems = []
    for job, _, task in job_tasks(docs):
        wheel_task = one(task.get("python_wheel_task"))
        if wheel_task is None:
            continue
        where = f"databricks_job.{job} task {task.get('task_key')!r}"
        if wheel_task.get("entry_point") != "xray":
            problems.append(f"{where}: entry_point is {wheel_task.get('entry_point')!r}, expected 'xray'")
        if normalize_dist(str(wheel_task.get("package_name"))) != normalize_dist(package_name):
            problems.append(f"{where}: package_name {wheel_task.get('package_name')!r} is not {package_name!r}")
        if "named_parameters" in wheel_task:
            problems.append(f"{where}: named_parameters cannot express the xray subcommand; use parameters")
        params = wheel_task.get("parameters")
        if not isinstance(params, list) or not params:
            problems.append(f"{where}: parameters must be a literal, non-empty list (no concat()) to be checked")
            continue
        argv = [resolve(str(param), variables_, locals_map) for param in params]
        _, error = parse_cli(argv)
        if error:
            problems.append(f"{where}: xray {' '.join(argv)}: {error}")
    return problems


