"""Offline checks of the Terraform under infra/: no Terraform provider, no network, no Spark session.

The .tf files are parsed with python-hcl2. The central check runs every job task's parameters through
the real ``xray`` argument parser (``streaming.cli.build_parser``), so renaming or removing a CLI option
that a Databricks job passes fails here instead of in a scheduled run.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import hcl2
import pytest
from support import REPO

from streaming.cli.commands import build_parser
from streaming.core.config import KEYS as CONFIG_KEYS
from streaming.lakehouse.catalog import ALL_TABLES, TABLES_BY_NAME

INFRA = REPO / "infra"
PLACEHOLDER = "0"  # stands for a Terraform expression the checks cannot evaluate (valid for str/int/float)
EXPECTED_COMMANDS = {"stream", "retrain", "metrics", "rescore", "ingest-kaggle", "maintain"}
SENSITIVE_VARIABLES = {"kaggle_username", "kaggle_key", "patient_id_salt", "alert_webhook_url"}

# The service's alert kinds (streaming/lakehouse/alerts.py): the SQL alerts are keyed by the kind they mirror.
from streaming.lakehouse.alerts import KINDS  # noqa: E402

SERVICE_ALERT_KINDS = set(KINDS)

PENDING_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {}
PENDING_COLUMNS: dict[str, tuple[str, ...]] = {}
PENDING_SETTINGS: set[str] = set()

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
    """The layer (= SQL schema) of a table the service declares, or will once PENDING_TABLES is merged."""
    if table in TABLES_BY_NAME:
        return TABLES_BY_NAME[table].layer
    return PENDING_TABLES[table][0] if table in PENDING_TABLES else None


def table_columns(table: str) -> set[str] | None:
    """Column names of a table, from the catalog, plus the PENDING_* ones until the catalog has them."""
    if table not in TABLES_BY_NAME:
        return set(PENDING_TABLES[table][1]) if table in PENDING_TABLES else None
    declared = set(TABLES_BY_NAME[table].column_names)
    pending = set(PENDING_COLUMNS.get(table, ()))
    # Once the other branch is merged (any of them declared), only the catalog counts: a renamed column fails.
    return declared if declared & pending else declared | pending


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


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return load_infra()


# ---- files and pins ----------------------------------------------------------------------------------


def test_every_tf_file_parses_and_the_layout_is_complete(docs):
    expected = {"versions.tf", "variables.tf", "main.tf", "outputs.tf", "storage.tf", "compute.tf", "jobs.tf",
                "sql.tf", "alerts.tf"}
    assert expected <= set(docs)
    assert (INFRA / "terraform.tfvars.example").is_file()
    assert (INFRA / "README.md").is_file()
    assert (INFRA / "checkov.sh").is_file()
    load_hcl((INFRA / "terraform.tfvars.example").read_text())


def test_provider_and_terraform_versions_are_pinned(docs):
    terraform = one(list(blocks(docs, "terraform")))
    assert terraform["required_version"].startswith(">=")
    providers = one(terraform["required_providers"])
    databricks = providers["databricks"]
    assert databricks["source"] == "databricks/databricks"
    assert re.fullmatch(r"~> 1\.\d+(\.\d+)?", databricks["version"]), databricks["version"]
    provider = one(list(blocks(docs, "provider")))
    assert set(provider) == {"databricks"}
    # No credential in the provider block: host/token come from the environment or a profile.
    assert not {"token", "password", "client_secret", "host"} & set(one(provider["databricks"]) or {})


# ---- the jobs call the CLI correctly ------------------------------------------------------------------


def test_every_wheel_task_is_a_valid_xray_command_line(docs):
    assert check_wheel_tasks(docs) == []


def test_the_jobs_cover_the_service_and_use_the_native_delta_engine(docs):
    variables_, locals_map = variables(docs), locals_(docs)
    commands = set()
    for job, _, task in job_tasks(docs):
        wheel_task = one(task.get("python_wheel_task"))
        if wheel_task is None:
            continue
        params = wheel_task["parameters"]
        args, error = parse_cli([resolve(str(p), variables_, locals_map) for p in params])
        assert error is None
        commands.add(args.command)
        where = f"{job}/{task['task_key']}"
        # Every task names the lakehouse (the volume root) and the runtime's native Delta engine.
        assert params[params.index("--lakehouse") + 1] == "${local.lakehouse_root}", where
        assert args.delta_engine == "delta-spark", where
        assert args.log_level == variables_["log_level"]["default"], where
        # The wheel is installed on the task's cluster.
        library = one(task.get("library"))
        assert library and library.get("whl") == "${local.wheel_library_path}", where
    assert commands == EXPECTED_COMMANDS


def test_every_task_runs_on_a_job_cluster(docs):
    for job, body, task in job_tasks(docs):
        keys = {cluster["job_cluster_key"] for cluster in body.get("job_cluster", [])}
        where = f"{job}/{task['task_key']}"
        assert "existing_cluster_id" not in task, f"{where} runs on an all-purpose cluster"
        if "run_job_task" in task:
            continue
        assert task.get("job_cluster_key") in keys or "new_cluster" in task, where
    for _, name, body in resources(docs, "databricks_job"):
        assert "existing_cluster_id" not in body, name


def test_job_triggers_and_dependencies(docs):
    jobs = {name: body for _, name, body in resources(docs, "databricks_job")}
    variables_ = variables(docs)

    stream = jobs["stream"]
    assert one(stream["continuous"])["pause_status"] == '${var.stream_paused ? "PAUSED" : "UNPAUSED"}'
    assert variables_["stream_paused"]["default"] is True, "the stream must be paused by default"
    assert stream["max_concurrent_runs"] == 1

    retrain = jobs["retrain"]
    schedule = one(retrain["schedule"])
    assert schedule["quartz_cron_expression"] == "${var.retrain_cron}"
    assert schedule["timezone_id"] == "UTC"
    tasks = {task["task_key"]: task for task in retrain["task"]}
    assert [d["task_key"] for d in tasks["metrics"]["depends_on"]] == ["retrain"]
    assert [d["task_key"] for d in tasks["rescore"]["depends_on"]] == ["retrain"]
    assert one(tasks["rescore"]["run_job_task"])["job_id"] == "${databricks_job.rescore.id}"
    assert [t["task_key"] for t in retrain["task"]] == sorted(tasks), "keep tasks sorted by task_key"

    # Quartz: seconds minutes hours day-of-month month day-of-week [year], exactly one of the day fields '?'.
    fields = variables_["retrain_cron"]["default"].split()
    assert len(fields) in (6, 7) and (fields[3] == "?") != (fields[5] == "?")


def test_the_maintenance_job_runs_xray_maintain_on_a_paused_schedule(docs):
    jobs = {name: body for _, name, body in resources(docs, "databricks_job")}
    variables_, locals_map = variables(docs), locals_(docs)
    maintain = jobs["maintain"]
    schedule = one(maintain["schedule"])
    assert schedule["quartz_cron_expression"] == "${var.maintain_cron}" and schedule["timezone_id"] == "UTC"
    assert schedule["pause_status"] == '${var.maintain_paused ? "PAUSED" : "UNPAUSED"}'
    assert variables_["maintain_paused"]["default"] is True, "paused by default, like retrain"
    assert maintain["max_concurrent_runs"] == 1
    fields = variables_["maintain_cron"]["default"].split()
    assert len(fields) in (6, 7) and (fields[3] == "?") != (fields[5] == "?")
    task = one(maintain["task"])
    params = [resolve(str(p), variables_, locals_map) for p in one(task["python_wheel_task"])["parameters"]]
    args, error = parse_cli(params)  # the real parser of `xray`
    assert error is None and args.command == "maintain"
    assert args.retention_hours == variables_["vacuum_retention_hours"]["default"] == 168
    assert "maintain" in locals_map["job_ids"] or "${databricks_job.maintain.id}" in str(locals_map["job_ids"])


def test_only_the_ingestion_job_gets_kaggle_credentials_from_the_secret_scope(docs):
    locals_map = locals_(docs)
    scope = "${local.secret_scope}"
    assert locals_map["kaggle_env"] == {
        "KAGGLE_USERNAME": f"{{{{secrets/{scope}/kaggle_username}}}}",
        "KAGGLE_KEY": f"{{{{secrets/{scope}/kaggle_key}}}}",
    }
    secret_keys = {body["key"] for _, _, body in resources(docs, "databricks_secret")}
    assert {"kaggle_username", "kaggle_key"} <= secret_keys
    for _, name, body in resources(docs, "databricks_job"):
        for cluster in body.get("job_cluster", []):
            env = one(cluster["new_cluster"])["spark_env_vars"]
            if name == "ingest_kaggle":
                assert env == "${merge(local.xray_env, local.kaggle_env)}"
            elif name == "stream":  # and the alert webhook (alerts.tf), nothing else
                assert env == "${merge(local.xray_env, local.alert_env)}"
            else:
                assert env == "${local.xray_env}", f"{name} must not see the Kaggle credentials"


def test_cluster_environment_sets_only_known_service_settings(docs):
    locals_map = locals_(docs)
    env = {**locals_map["xray_env_base"], **locals_map["salt_env"]}
    alert_env = re.findall(r"\b(XRAY_\w+)\s*=", locals_map["alert_env"])
    assert alert_env == ["XRAY_ALERT_WEBHOOK_URL"]
    for name in [*env, *alert_env]:
        assert name.startswith("XRAY_")
        key = name[len("XRAY_"):].lower()
        assert key in CONFIG_KEYS or key in PENDING_SETTINGS, f"{name} is not a setting of streaming/core/config.py"
    assert env["XRAY_DELTA_ENGINE"] == "delta-spark"
    assert env["XRAY_LAKEHOUSE"] == "${local.lakehouse_root}"


# ---- variables ---------------------------------------------------------------------------------------


def _used_variables(docs: dict[str, dict[str, Any]]) -> set[str]:
    used = set()
    for doc in docs.values():
        for key, value in doc.items():
            if key == "variable":
                continue  # a variable's own validation is not a use
            for _, leaf in walk(value):
                if isinstance(leaf, str):
                    used.update(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", leaf))
    return used


def test_every_variable_is_documented_has_a_default_and_is_used(docs):
    declared = variables(docs)
    used = _used_variables(docs)
    for name, body in declared.items():
        assert len(str(body.get("description", "")).strip()) >= 20, f"variable {name} needs a description"
        assert "default" in body, f"variable {name} needs a (safe) default"
        assert "type" in body, f"variable {name} needs a type"
    assert sorted(set(declared) - used) == [], "declared but never used"
    assert sorted(used - set(declared)) == [], "used but not declared"


def test_secret_variables_are_sensitive_and_empty_by_default(docs):
    declared = variables(docs)
    for name in SENSITIVE_VARIABLES:
        assert declared[name].get("sensitive") is True, name
        assert declared[name]["default"] in ("", None), name
    for _, name, body in resources(docs, "databricks_secret"):
        refs = re.findall(r"var\.(\w+)", body["string_value"])
        assert refs and all(declared[ref].get("sensitive") is True for ref in refs), name


def test_the_tfvars_example_sets_only_declared_non_secret_variables(docs):
    example = load_hcl((INFRA / "terraform.tfvars.example").read_text())
    declared = variables(docs)
    assert example, "the example sets nothing"
    for name in example:
        assert name in declared, f"terraform.tfvars.example sets undeclared variable {name}"
        assert not declared[name].get("sensitive"), f"terraform.tfvars.example must not hold secret {name}"


# ---- no secrets in code ------------------------------------------------------------------------------

_SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_?key|kaggle_(key|username)|string_value|access_key)",
                         re.IGNORECASE)
_REFERENCE = re.compile(r"^(\$\{[^}]*\}|\{\{secrets/[^/{}]*(\$\{[^}]*\})?[^/{}]*/[\w.-]+\}\})$")
_SECRET_PATTERNS = {
    "Databricks token": re.compile(r"dapi[0-9a-f]{32}"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "literal credential": re.compile(
        r"""(?i)\b(kaggle_key|kaggle_username|password|token|client_secret|string_value)\b\s*[=:]\s*"[^"$\s{]{6,}\""""
    ),
    "32-hex key": re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])"),
}


def find_secret_literals(docs: dict[str, dict[str, Any]]) -> list[str]:
    """Attributes whose name says credential and whose value is a literal, not a reference."""
    problems = []
    for file_name, doc in docs.items():
        for path, leaf in walk(doc):
            if path.startswith("variable."):
                continue  # variable defaults are checked by test_secret_variables_are_sensitive...
            key = re.split(r"[.\[]", path.rsplit(".", 1)[-1])[0]
            if not _SECRET_KEY.search(key) or not isinstance(leaf, str) or leaf == "":
                continue
            if key in {"secret_scope", "secret_scope_name"} or _REFERENCE.match(leaf):
                continue
            problems.append(f"{file_name}: {path} = {leaf!r} looks like a credential literal")
    return problems


def test_no_secret_literals_in_terraform(docs):
    assert find_secret_literals(docs) == []
    for path in sorted(INFRA.rglob("*")):
        if not path.is_file() or ".terraform" in path.parts:
            continue
        text = path.read_text(errors="replace")
        for label, pattern in _SECRET_PATTERNS.items():
            assert not pattern.search(text), f"{path.relative_to(REPO)} holds a {label}"


def test_the_secret_scanner_reports_a_literal_key():
    broken = load_hcl(
        'resource "databricks_secret" "k" {\n  scope = "s"\n  key = "kaggle_key"\n  string_value = "abc123def"\n}\n'
        'locals {\n  env = { KAGGLE_KEY = "abc123def", KAGGLE_USERNAME = "{{secrets/s/kaggle_username}}" }\n}\n'
    )
    problems = find_secret_literals({"broken.tf": broken})
    assert len(problems) == 2 and all("abc123def" in p for p in problems)


# ---- clusters ----------------------------------------------------------------------------------------


def _cluster_specs(docs) -> Iterator[tuple[str, dict]]:
    for _, name, body in resources(docs, "databricks_cluster"):
        yield f"databricks_cluster.{name}", body
    for _, name, body in resources(docs, "databricks_job"):
        for cluster in body.get("job_cluster", []):
            yield f"databricks_job.{name}/{cluster['job_cluster_key']}", one(cluster["new_cluster"])
        for task in body.get("task", []):
            if "new_cluster" in task:
                yield f"databricks_job.{name}/{task['task_key']}", one(task["new_cluster"])


def test_all_purpose_clusters_autoterminate_and_start_without_waiting(docs):
    variables_, locals_map = variables(docs), locals_(docs)
    clusters = list(resources(docs, "databricks_cluster"))
    assert clusters, "expected the dev cluster"
    for _, name, body in clusters:
        minutes = float(resolve(str(body["autotermination_minutes"]), variables_, locals_map))
        assert 10 <= minutes <= 60, f"{name}: autotermination_minutes {minutes}"
        assert body.get("no_wait") is True, f"{name} should not block the apply until it is running"


def test_every_cluster_is_tagged_spot_with_fallback_and_single_user(docs):
    specs = list(_cluster_specs(docs))
    assert len(specs) >= 5
    for where, spec in specs:
        assert str(spec.get("custom_tags", "")).startswith("${local."), f"{where}: custom_tags"
        assert spec.get("data_security_mode") == "SINGLE_USER", where
        assert spec.get("single_user_name"), f"{where}: a single-user cluster names its user"
        assert spec.get("spark_env_vars"), where
        aws = [d["aws_attributes"] for d in spec.get("dynamic", []) if "aws_attributes" in d]
        assert aws, f"{where}: no aws_attributes"
        content = one(one(aws)["content"])
        assert content["availability"] == "SPOT_WITH_FALLBACK", where
        assert content["first_on_demand"] >= 1, where


def test_tags_are_merged_from_the_variable(docs):
    locals_map = locals_(docs)
    assert locals_map["tags"].startswith("${merge(var.tags,")
    for _, name, body in resources(docs, "databricks_job"):
        assert body.get("tags") == "${local.job_tags}", name
    warehouse = one([body for _, _, body in resources(docs, "databricks_sql_endpoint")])
    tags_block = one(warehouse["tags"])
    assert one(tags_block["dynamic"])["custom_tags"]["for_each"] == "${local.tags}"


# ---- the wheel ---------------------------------------------------------------------------------------


def test_wheel_path_matches_the_package_built_from_setup_cfg(docs):
    name, version, console_scripts = setup_metadata()
    expected = f"{normalize_dist(name)}-{version}-py3-none-any.whl"
    default = variables(docs)["wheel_path"]["default"]
    assert default == f"../dist/{expected}"
    assert re.search(r"^\s*xray\s*=\s*streaming\.cli:main\s*$", console_scripts, re.MULTILINE)
    for _, _, task in job_tasks(docs):
        wheel_task = one(task.get("python_wheel_task"))
        if wheel_task:
            assert wheel_task["package_name"] == name  # the name in setup.cfg, as Databricks documents
    built = sorted((REPO / "dist").glob(f"{normalize_dist(name)}-*.whl"))
    if built:  # a local build, if any, is the version Terraform would upload
        assert expected in {path.name for path in built}, f"dist/ holds {[p.name for p in built]}"


# ---- storage and SQL ---------------------------------------------------------------------------------


def test_lakehouse_root_is_the_managed_volume(docs):
    locals_map = locals_(docs)
    assert "/Volumes/${var.catalog_name}/ops/lakehouse" in locals_map["lakehouse_root"]
    assert "/dbfs${var.dbfs_root}" in locals_map["lakehouse_root"]
    volumes = {name: body for _, name, body in resources(docs, "databricks_volume")}
    assert volumes["lakehouse"]["name"] == "lakehouse"
    assert volumes["lakehouse"]["volume_type"] == "MANAGED"
    assert volumes["lakehouse"]["schema_name"] == '${databricks_schema.layer["ops"].name}'
    assert locals_map["tables_root"] == "${local.lakehouse_root}/tables"


def test_unity_catalog_objects_have_a_dbfs_fallback(docs):
    uc_types = {"databricks_catalog", "databricks_schema", "databricks_volume", "databricks_file",
                "databricks_sql_table", "databricks_grant"}
    for res_type, name, body in resources(docs):
        if res_type in uc_types:
            switch = str(body.get("count", "")) + str(body.get("for_each", ""))
            assert "local.uc" in switch, f"{res_type}.{name} must be off when use_unity_catalog = false"
    workspace_file = one([b for _, _, b in resources(docs, "databricks_workspace_file")])
    assert workspace_file["count"] == "${local.uc ? 0 : 1}"


def test_every_table_named_in_sql_exists_in_the_lakehouse(docs):
    locals_map = locals_(docs)
    views = locals_map["sql_views"]
    assert "gold_dataset_summary" in views
    for table, schema in views.items():
        assert table_layer(table), f"view over unknown table {table}"
        assert schema == table_layer(table), f"{table} belongs in schema {table_layer(table)}"
    assert {spec.layer for spec in ALL_TABLES} <= set(locals_map["schema_comments"])
    view = one([body for _, _, body in resources(docs, "databricks_sql_table")])
    assert view["table_type"] == "VIEW"
    assert view["view_definition"] == "SELECT * FROM delta.`${local.tables_root}/${each.key}`"
    # Any table-like name anywhere in the Terraform must be a real table.
    names = {spec.name for spec in ALL_TABLES}
    for path in INFRA.glob("*.tf"):
        for word in re.findall(r"\b(?:bronze|silver|gold)_[a-z0-9_]+\b|\bpipeline_events\b", path.read_text()):
            assert word in names, f"{path.name} mentions {word}, which is not in streaming/tables.py"


def test_warehouse_is_serverless_and_stops_itself(docs):
    warehouse = one([body for _, _, body in resources(docs, "databricks_sql_endpoint")])
    assert warehouse["enable_serverless_compute"] is True
    assert warehouse["warehouse_type"] == "PRO"
    assert warehouse["auto_stop_mins"] == "${var.warehouse_auto_stop_mins}"
    assert 5 <= variables(docs)["warehouse_auto_stop_mins"]["default"] <= 20
    assert warehouse["max_num_clusters"] == 1


def test_outputs_expose_jobs_warehouse_and_paths(docs):
    outputs = {}
    for block in blocks(docs, "output"):
        outputs.update(block)
    for name in ("job_ids", "sql_warehouse_id", "lakehouse_root", "landing_path", "wheel_library_path"):
        assert name in outputs, name
    for name, body in outputs.items():
        assert body.get("description"), f"output {name} needs a description"


# ---- alerts (alerts.tf): the webhook secret, job notifications, SQL alerts ---------------------------


def test_the_alert_webhook_is_a_secret_the_stream_job_reads(docs):
    variables_, locals_map = variables(docs), locals_(docs)
    assert variables_["alert_webhook_url"]["validation"], "an https:// URL or empty"
    assert locals_map["alert_webhook_on"] == '${nonsensitive(var.alert_webhook_url != "")}'
    secret = one([body for _, name, body in resources(docs, "databricks_secret") if name == "alert_webhook_url"])
    assert secret["count"] == "${local.alert_webhook_on ? 1 : 0}", "no secret without a URL"
    assert secret["key"] == "alert_webhook_url" and secret["string_value"] == "${var.alert_webhook_url}"
    # The cluster gets a {{secrets/...}} reference to that key, never the value.
    assert locals_map["alert_env"] == (
        '${local.alert_webhook_on ? {XRAY_ALERT_WEBHOOK_URL = "{{secrets/${local.secret_scope}/alert_webhook_url}}"}'
        " : {}}"
    )
    jobs = {name: body for _, name, body in resources(docs, "databricks_job")}
    assert "${databricks_secret.alert_webhook_url}" in jobs["stream"]["depends_on"], "resolved at cluster start"


def test_a_failed_stream_notifies_the_webhook_destination(docs):
    destination = one([b for _, n, b in resources(docs, "databricks_notification_destination") if n == "webhook"])
    assert destination["count"] == "${local.alert_webhook_on ? 1 : 0}"
    assert one(one(destination["config"])["generic_webhook"])["url"] == "${var.alert_webhook_url}"
    assert locals_(docs)["webhook_destination_ids"] == "${databricks_notification_destination.webhook[*].id}"

    stream = {name: body for _, name, body in resources(docs, "databricks_job")}["stream"]
    dynamic = {key: block for item in stream["dynamic"] for key, block in item.items()}
    webhooks = dynamic["webhook_notifications"]
    assert webhooks["for_each"] == "${local.webhook_destination_ids}"
    assert one(one(webhooks["content"])["on_failure"])["id"] == "${webhook_notifications.value}"
    assert one(dynamic["email_notifications"]["content"])["on_failure"] == "${email_notifications.value}"


def test_no_output_exposes_a_secret(docs):
    forbidden = re.compile(
        r"var\.(" + "|".join(sorted(SENSITIVE_VARIABLES)) + r")\b|databricks_secret\.|"
        r"databricks_notification_destination\.|local\.(alert_env|kaggle_env|salt_env)\b"
    )
    outputs = {}
    for block in blocks(docs, "output"):
        outputs.update(block)
    assert outputs
    for name, body in outputs.items():
        for path, leaf in walk(body):
            assert not (isinstance(leaf, str) and forbidden.search(leaf)), f"output {name}.{path} = {leaf!r}"


def test_sql_alerts_read_only_declared_tables_and_columns(docs):
    variables_ = variables(docs)
    alerts = locals_(docs)["sql_alerts"]
    assert set(alerts) - {"service_alerts"} <= SERVICE_ALERT_KINDS, "keyed by the service's alert kind"
    assert {"quarantine_rate", "drift", "stream_stalled", "backlog_age", "service_alerts"} <= set(alerts)
    for name, alert in alerts.items():
        problems, outputs = check_alert_query(alert["query"])
        assert problems == [], f"sql_alerts.{name}: {problems}"
        assert alert["column"] in outputs, f"sql_alerts.{name} compares {alert['column']!r}, not a query output"
        threshold = str(alert["threshold"])
        ref = re.fullmatch(r"\$\{var\.(\w+)\}", threshold)
        assert (ref and ref.group(1) in variables_) or threshold == "0", f"sql_alerts.{name}: {threshold}"


def test_the_alert_query_checker_reports_unknown_names():
    good = "SELECT max(backlog_files) AS n FROM ${local.catalog_name}.ops.pipeline_events WHERE query = 'bronze'"
    assert check_alert_query(good) == ([], {"n"})
    cases = {
        good.replace("backlog_files", "backlog_file"): "unknown column or word 'backlog_file'",
        good.replace("ops.pipeline_events", "ops.pipeline_event"): "unknown table pipeline_event",
        good.replace("ops.pipeline_events", "gold.pipeline_events"): "pipeline_events is in schema ops, not gold",
        good.replace("max(backlog_files) AS n", "max(backlog_age) AS backlog_age"): "'backlog_age'",
        good.replace("'bronze'", "${var.layer}"): "interpolates something other than the catalog",
    }
    for sql, expected in cases.items():
        problems, _ = check_alert_query(sql)
        assert any(expected in problem for problem in problems), (sql, problems)


def test_sql_alerts_are_evaluated_by_a_paused_job_notifying_the_destinations(docs):
    variables_, locals_map = variables(docs), locals_(docs)
    assert locals_map["sql_alerts_on"] == "${local.uc && var.create_sql_views}", "they read the views"
    assert table_layer("pipeline_alerts") == locals_map["sql_views"]["pipeline_alerts"] == "ops"
    query = one([body for _, _, body in resources(docs, "databricks_query")])
    alert = one([body for _, _, body in resources(docs, "databricks_alert")])
    for body in (query, alert):
        assert body["for_each"] == "${local.sql_alerts_on ? local.sql_alerts : {}}"
    assert query["warehouse_id"] == "${databricks_sql_endpoint.this.id}"
    assert query["query_text"] == "${each.value.query}"
    condition = one(alert["condition"])
    assert condition["op"] == "GREATER_THAN"
    assert one(one(condition["operand"])["column"])["name"] == "${each.value.column}"
    assert one(one(condition["threshold"])["value"])["double_value"] == "${each.value.threshold}"

    job = {name: body for _, name, body in resources(docs, "databricks_job")}["sql_alerts"]
    assert job["tags"] == "${local.job_tags}" and "job_cluster" not in job and "task" not in job
    schedule = one(job["schedule"])
    assert schedule["pause_status"] == '${var.sql_alerts_paused ? "PAUSED" : "UNPAUSED"}'
    assert variables_["sql_alerts_paused"]["default"] is True, "every run wakes the warehouse: paused by default"
    fields = variables_["sql_alerts_cron"]["default"].split()
    assert len(fields) in (6, 7) and (fields[3] == "?") != (fields[5] == "?")
    task = one([item["task"] for item in job["dynamic"] if "task" in item])
    assert task["for_each"] == "${local.sql_alert_tasks}"
    sql_task = one(one(task["content"])["sql_task"])
    assert sql_task["warehouse_id"] == "${databricks_sql_endpoint.this.id}", "SQL tasks run on the warehouse"
    alert_block = one(sql_task["alert"])
    assert alert_block["alert_id"] == "${databricks_alert.pipeline[task.key].id}"
    subscriptions = one(alert_block["dynamic"])["subscriptions"]
    assert "local.webhook_destination_ids" in subscriptions["for_each"]
    assert "local.email_destination_ids" in subscriptions["for_each"]
    assert one(subscriptions["content"]) == {"destination_id": "${subscriptions.value}"}
    assert "in databricks_job.sql_alerts" in locals_map["job_ids"], "operators may run it, outputs list it"


def _condition_holds(condition: str, name: str, value: float) -> bool:
    """Evaluate a numeric validation condition (comparisons joined by && / ||) with var.<name> = value."""
    expr = condition.removeprefix("${").removesuffix("}").replace(f"var.{name}", repr(value))
    expr = expr.replace("&&", " and ").replace("||", " or ")
    assert re.fullmatch(r"[\d.e+\- <>=()andor]+", expr), f"not a numeric condition: {condition}"
    return bool(eval(expr, {"__builtins__": {}}))  # noqa: S307 - digits, comparisons and and/or only


@pytest.mark.parametrize(
    "name", ["quarantine_rate_threshold", "drift_psi_threshold", "stream_stall_minutes", "backlog_age_minutes"]
)
def test_alert_thresholds_are_validated(docs, name):
    variable = variables(docs)[name]
    condition = one(variable["validation"])["condition"]
    assert f"var.{name}" in condition
    assert _condition_holds(condition, name, variable["default"]), "the default must pass its own validation"
    assert not _condition_holds(condition, name, 0), "0 would alert on everything (or nothing)"
    assert not _condition_holds(condition, name, 1e9), "an unbounded threshold never alerts"


# ---- the checker itself fails when it should ---------------------------------------------------------

BROKEN_JOB = """
resource "databricks_job" "broken" {
  task {
    task_key = "t"
    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters   = ["stream", "--lakehouse", local.root, "--delta-engine", "delta-spark", "--no-such-option", "1"]
    }
  }
}
"""


def test_checker_reports_an_option_the_cli_does_not_have():
    problems = check_wheel_tasks({"broken.tf": load_hcl(BROKEN_JOB)}, package_name="xray-lakehouse")
    assert len(problems) == 1
    assert "--no-such-option" in problems[0] and "unrecognized arguments" in problems[0]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('"stream",', '"strem",', "invalid choice"),
        ('"delta-spark"', '"spark"', "invalid choice"),
        ('entry_point  = "xray"', 'entry_point  = "main"', "entry_point"),
        ('package_name = "xray-lakehouse"', 'package_name = "xray"', "package_name"),
        ('parameters   = [', 'parameters   = concat(["x"], [', "literal"),
    ],
)
def test_checker_reports_other_mistakes(replace, by, expected):
    text = BROKEN_JOB.replace(', "--no-such-option", "1"', "").replace(replace, by)
    if "concat(" in text:
        text = text.replace('"delta-spark"]', '"delta-spark"])')
    problems = check_wheel_tasks({"broken.tf": load_hcl(text)}, package_name="xray-lakehouse")
    assert len(problems) == 1 and expected in problems[0], problems


def test_resolve_uses_variable_defaults_and_placeholders():
    variables_ = {"n": {"default": 10}, "flag": {"default": True}, "s": {"default": "x-${var.n}"}}
    locals_map = {"root": "/Volumes/${var.s}/v", "cond": "${var.flag ? 1 : 2}"}
    assert resolve("${var.n}", variables_, locals_map) == "10"
    assert resolve("${tostring(var.n)}", variables_, locals_map) == "10"
    assert resolve("${var.flag}", variables_, locals_map) == "true"
    assert resolve("${local.root}", variables_, locals_map) == "/Volumes/x-10/v"
    assert resolve("${local.cond}", variables_, locals_map) == PLACEHOLDER
    assert resolve('a${merge({a = "}"}, {})}b', variables_, locals_map) == f"a{PLACEHOLDER}b"


# ---- formatting (only where a terraform binary exists; it needs no provider for this) ----------------


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary")
def test_terraform_files_are_formatted():
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-no-color", str(INFRA)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`: {result.stdout}"
