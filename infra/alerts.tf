# Alerts: where the pipeline's warnings go on Databricks, and a second line of checks that still works when
# the stream process itself is down.
#
# - The service POSTs its own JSON alerts (and writes them to pipeline_alerts) to alert_webhook_url: the URL
#   is a secret in the scope, given to the stream job as XRAY_ALERT_WEBHOOK_URL (jobs.tf).
# - The same URL is a webhook notification destination: the stream job notifies it when a run fails
#   (jobs.tf).
# - Databricks SQL alerts over the ops views evaluate the same signals as the service (quarantine rate,
#   drift, stalled stream, backlog age) plus the alerts the service recorded; a scheduled job runs them and
#   notifies the destinations. They read the views, so they exist once create_sql_views = true.
#
# Databricks posts its own JSON to a webhook destination (not the service's format): the receiver must
# accept both. See README, "Alerts".

locals {
  # Whether each part is on; only whether the secret is set is non-sensitive.
  alert_webhook_on = nonsensitive(var.alert_webhook_url != "")
  alert_emails_on  = length(var.alert_emails) > 0
  sql_alerts_on    = local.uc && var.create_sql_views

  # The stream job's extra environment: the webhook as a secret reference resolved when the cluster starts.
  alert_env = local.alert_webhook_on ? { XRAY_ALERT_WEBHOOK_URL = "{{secrets/${local.secret_scope}/alert_webhook_url}}" } : {}

  webhook_destination_ids = databricks_notification_destination.webhook[*].id
  email_destination_ids   = databricks_notification_destination.email[*].id

  # One SQL alert per signal, keyed by the service's alert kind where it has one. Each query returns one
  # row; `column` is compared with `threshold` (GREATER_THAN). `webhook`: also notify the webhook
  # destination (service_alerts only goes to e-mail: the service already posted those to the webhook).
  # Columns used here must exist in streaming/lakehouse/catalog.py (tests/infra/test_alerts.py checks).
  sql_alerts = {
    quarantine_rate = {
      title     = "quarantine rate, last hour"
      column    = "quarantine_rate"
      threshold = var.quarantine_rate_threshold
      webhook   = true
      query     = <<-SQL
        SELECT
          coalesce(sum(quarantined_rows) / nullif(sum(input_rows), 0), 0) AS quarantine_rate,
          coalesce(sum(quarantined_rows), 0) AS quarantined_rows,
          coalesce(sum(input_rows), 0) AS input_rows
        FROM ${local.catalog_name}.ops.pipeline_events
        WHERE query = 'silver' AND event_time >= current_timestamp() - INTERVAL 1 HOUR
      SQL
    }
    drift = {
      title     = "feature drift (PSI), last hour"
      column    = "max_drift_psi"
      threshold = var.drift_psi_threshold
      webhook   = true
      query     = <<-SQL
        SELECT
          coalesce(max(drift_psi), 0) AS max_drift_psi,
          max_by(predicted_prevalence, event_time) AS predicted_prevalence
        FROM ${local.catalog_name}.ops.pipeline_events
        WHERE drift_psi IS NOT NULL AND event_time >= current_timestamp() - INTERVAL 1 HOUR
      SQL
    }
    # Only what the stream logged: a stream that died after a batch that left nothing waiting shows no
    # backlog here; the job's failure notification (and the service's own query_failed and stream_stalled alerts) cover that case.
    stream_stalled = {
      title     = "stream stalled with landing files waiting"
      column    = "stalled_minutes"
      threshold = var.stream_stall_minutes
      webhook   = true
      query     = <<-SQL
        SELECT
          CASE WHEN max_by(backlog_files, event_time) > 0
               THEN timestampdiff(MINUTE, max(event_time), current_timestamp()) ELSE 0 END AS stalled_minutes,
          max_by(backlog_files, event_time) AS backlog_files,
          max(event_time) AS last_bronze_batch
        FROM ${local.catalog_name}.ops.pipeline_events
        WHERE query = 'bronze' AND event_time >= current_timestamp() - INTERVAL 7 DAYS
      SQL
    }
    # How long a file arriving now waits: the newest backlog over the last hour's ingestion rate (files
    # per minute). A stream ingesting nothing is the stream_stalled alert's case.
    backlog_age = {
      title     = "landing backlog wait, minutes"
      column    = "backlog_wait_minutes"
      threshold = var.backlog_age_minutes
      webhook   = true
      query     = <<-SQL
        SELECT
          coalesce(max_by(backlog_files, event_time) * 60.0 / nullif(sum(input_rows), 0), 0) AS backlog_wait_minutes,
          max_by(backlog_files, event_time) AS backlog_files,
          coalesce(sum(input_rows), 0) AS files_last_hour
        FROM ${local.catalog_name}.ops.pipeline_events
        WHERE query = 'bronze' AND event_time >= current_timestamp() - INTERVAL 1 HOUR
      SQL
    }
    service_alerts = {
      title     = "alerts the service recorded, last hour"
      column    = "alerts"
      threshold = 0
      webhook   = false
      query     = <<-SQL
        SELECT
          count(*) AS alerts,
          max(alert_time) AS newest_alert_time,
          max_by(kind, alert_time) AS newest_kind,
          max_by(severity, alert_time) AS newest_severity,
          max_by(message, alert_time) AS newest_message
        FROM ${local.catalog_name}.ops.pipeline_alerts
        WHERE alert_time >= current_timestamp() - INTERVAL 1 HOUR
      SQL
    }
  }

  # The alerts that have someone to tell, and the job that evaluates them.
  sql_alert_tasks = {
    for name, alert in local.sql_alerts : name => alert
    if local.sql_alerts_on && ((alert.webhook && local.alert_webhook_on) || local.alert_emails_on)
  }
}

# ---- the webhook: a secret for the service, a notification destination for Databricks ----------------

# Terraform holds the value in its state (keep the state encrypted, see README "Secrets").
resource "databricks_secret" "alert_webhook_url" {
  count = local.alert_webhook_on ? 1 : 0

  scope        = databricks_secret_scope.this.id
  key          = "alert_webhook_url"
  string_value = var.alert_webhook_url
}

# Creating destinations needs a workspace admin.
resource "databricks_notification_destination" "webhook" {
  count = local.alert_webhook_on ? 1 : 0

  display_name = "${var.name_prefix} pipeline alerts (webhook)"
  config {
    generic_webhook {
      url = var.alert_webhook_url
    }
  }
}

# SQL alerts notify destinations only; jobs e-mail alert_emails directly.
resource "databricks_notification_destination" "email" {
  count = local.sql_alerts_on && local.alert_emails_on ? 1 : 0

  display_name = "${var.name_prefix} pipeline alerts (e-mail)"
  config {
    email {
      addresses = var.alert_emails
    }
  }
}

# ---- SQL alerts ---------------------------------------------------------------------------------------

resource "databricks_query" "alert" {
  for_each = local.sql_alerts_on ? local.sql_alerts : {}

  display_name = "${var.name_prefix} alert: ${each.value.title}"
  description  = "xray-lakehouse SQL alert ${each.key} (managed by Terraform, infra/alerts.tf)."
  warehouse_id = databricks_sql_endpoint.this.id
  query_text   = each.value.query

  depends_on = [databricks_sql_table.view]
}

resource "databricks_alert" "pipeline" {
  for_each = local.sql_alerts_on ? local.sql_alerts : {}

  display_name = "${var.name_prefix} ${each.key}: ${each.value.title}"
  query_id     = databricks_query.alert[each.key].id
  condition {
    op = "GREATER_THAN"
    operand {
      column {
        name = each.value.column
      }
    }
    threshold {
      value {
        double_value = each.value.threshold
      }
    }
    empty_result_state = "OK"
  }
  # 0: notify when the alert turns TRIGGERED, not again until it was OK in between.
  seconds_to_retrigger = 0
}

# Alerts evaluate when a job runs them: one SQL task per alert on the serverless warehouse, notifying the
# destinations. Paused by default: every run wakes the warehouse (see README, Costs).
resource "databricks_job" "sql_alerts" {
  #checkov:skip=CKV2_XRAY_3: SQL tasks run on the tagged serverless warehouse; the job has no job cluster to tag
  #checkov:skip=CKV2_XRAY_5: SQL tasks run on the SQL warehouse; there is no cluster whose access mode to set
  count = length(local.sql_alert_tasks) > 0 ? 1 : 0

  name        = "${var.name_prefix}-sql-alerts"
  description = "Evaluates the xray SQL alerts (quarantine rate, drift, stalled stream, backlog age, service alerts) and notifies their destinations."
  tags        = local.job_tags

  schedule {
    quartz_cron_expression = var.sql_alerts_cron
    timezone_id            = "UTC"
    pause_status           = var.sql_alerts_paused ? "PAUSED" : "UNPAUSED"
  }
  max_concurrent_runs = 1
  timeout_seconds     = 1800

  dynamic "email_notifications" {
    for_each = local.alert_emails_on ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  # No run_as: the job runs as its owner, the identity that applied this and owns the queries and alerts
  # (run_as_service_principal is for the clusters writing the lakehouse; this job only reads the views).

  dynamic "task" {
    for_each = local.sql_alert_tasks
    content {
      task_key = task.key
      sql_task {
        warehouse_id = databricks_sql_endpoint.this.id
        alert {
          alert_id = databricks_alert.pipeline[task.key].id
          dynamic "subscriptions" {
            for_each = concat(task.value.webhook ? local.webhook_destination_ids : [], local.email_destination_ids)
            content {
              destination_id = subscriptions.value
            }
          }
        }
      }
    }
  }
}
