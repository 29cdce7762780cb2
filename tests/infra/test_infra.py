"""Offline checks of the Terraform under infra/: no Terraform provider, no network, no Spark session.

The .tf files are parsed with python-hcl2. The central check runs every job task's parameters through
the real ``xray`` argument parser (``streaming.cli.build_parser``), so renaming or removing a CLI option
that a Databricks job passes fails here instead of in a scheduled run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hcltools import (
    INFRA,
    PLACEHOLDER,
    SENSITIVE_VARIABLES,
    blocks,
    check_wheel_tasks,
    job_tasks,
    load_hcl,
    locals_,
    normalize_dist,
    one,
    parse_cli,
    resolve,
    resources,
    setup_metadata,
    table_layer,
    variables,
    walk,
)
from support import REPO

from streaming.core.config import KEYS as CONFIG_KEYS
from streaming.lakehouse.catalog import ALL_TABLES

EXPECTED_COMMANDS = {"stream", "retrain", "metrics", "rescore", "ingest-kaggle", "maintain"}


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
        assert key in CONFIG_KEYS, f"{name} is not a setting of streaming/core/config.py"
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
    assert "no option --no-such-option" in problems[0]


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('"stream",', '"strem",', "no command 'strem'; did you mean 'xray stream'?"),
        ('"delta-spark"', '"spark"', "'spark' is not one of auto, delta-rs, delta-spark"),
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
