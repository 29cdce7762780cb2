"""Offline checks of infra/alerts.tf: the alert webhook as a secret the stream job reads, the job's failure
notification, and the Databricks SQL alerts mirroring the service's own alerts (their queries read only
tables and columns the catalogue declares, their thresholds are validated)."""

from __future__ import annotations

import re

import pytest
from hcltools import (
    SENSITIVE_VARIABLES,
    blocks,
    check_alert_query,
    locals_,
    one,
    resources,
    table_layer,
    variables,
    walk,
)

from streaming.lakehouse.alerts import KINDS

SERVICE_ALERT_KINDS = set(KINDS)


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
    return bool(eval(expr, {"__builtins__": {}}))  # digits, comparisons and and/or only


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


