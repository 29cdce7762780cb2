# The jobs: every task is a python_wheel_task calling the `xray` console script of the xray-lakehouse
# wheel (setup.cfg: xray = streaming.cli:main) with the same options as on a laptop. Every task passes
# --lakehouse <volume root> and --delta-engine delta-spark (the runtime's native Delta).
# tests/infra/test_infra.py parses these parameter lists with streaming.cli.build_parser(): keep them literal
# lists (no concat()), so a renamed or removed CLI option fails the tests, not a 3 a.m. run.
#
# Each job runs on its own job cluster (jobs-compute rate, terminated when the run ends); none uses the
# all-purpose cluster. Dedicated (single-user) access mode: UC volumes plus the Py4J gateway that the
# delta-spark engine check needs; the job's run-as identity is the cluster's user.

locals {
  # With the SQL alerts job (alerts.tf) when it exists.
  job_ids = merge({
    stream        = databricks_job.stream.id
    retrain       = databricks_job.retrain.id
    rescore       = databricks_job.rescore.id
    ingest_kaggle = databricks_job.ingest_kaggle.id
    maintain      = databricks_job.maintain.id
  }, { for job in databricks_job.sql_alerts : "sql_alerts" => job.id })
}

# ---- continuous streaming: landing -> bronze -> silver -> gold, exactly once ------------------------

resource "databricks_job" "stream" {
  name        = "${var.name_prefix}-stream"
  description = "xray stream: continuous Structured Streaming from the landing volume into bronze, silver and gold."
  tags        = local.job_tags

  # Paused by default. Set stream_paused = false and apply to start it: with control_run_state the
  # provider starts/stops the active run to match pause_status, and restarts it when the job changes.
  continuous {
    pause_status = var.stream_paused ? "PAUSED" : "UNPAUSED"
  }
  control_run_state   = true
  max_concurrent_runs = 1

  dynamic "email_notifications" {
    for_each = length(var.alert_emails) > 0 ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  # A failed run also goes to the alert webhook (alerts.tf). No health rule for a stalled stream: a
  # continuous run never ends (RUN_DURATION_SECONDS means nothing), and the STREAMING_BACKLOG_* metrics
  # behind on_streaming_backlog_exceeded measure sources Databricks knows (Kafka, Kinesis, Delta, Auto
  # Loader), while this job's one query reads landing through the service's own source: they would never
  # fire. The SQL alerts stream_stalled and backlog_age watch that backlog from pipeline_events instead.
  dynamic "webhook_notifications" {
    for_each = local.webhook_destination_ids
    content {
      on_failure {
        id = webhook_notifications.value
      }
    }
  }

  dynamic "run_as" {
    for_each = var.run_as_service_principal == "" ? [] : [var.run_as_service_principal]
    content {
      service_principal_name = run_as.value
    }
  }

  job_cluster {
    job_cluster_key = "stream"
    new_cluster {
      spark_version      = local.spark_version
      node_type_id       = local.node_type_id
      num_workers        = var.stream_num_workers
      data_security_mode = "SINGLE_USER"
      single_user_name   = local.job_run_as
      spark_conf         = local.stream_spark_conf
      # The service's alert webhook (alerts.tf), resolved from the secret scope at cluster start.
      spark_env_vars = merge(local.xray_env, local.alert_env)
      custom_tags    = local.stream_cluster_tags

      dynamic "aws_attributes" {
        for_each = var.cloud == "aws" ? [1] : []
        content {
          availability           = "SPOT_WITH_FALLBACK"
          first_on_demand        = 1
          zone_id                = var.aws_zone_id
          spot_bid_price_percent = 100
        }
      }
      dynamic "azure_attributes" {
        for_each = var.cloud == "azure" ? [1] : []
        content {
          availability       = "SPOT_WITH_FALLBACK_AZURE"
          first_on_demand    = 1
          spot_bid_max_price = -1
        }
      }
      dynamic "gcp_attributes" {
        for_each = var.cloud == "gcp" ? [1] : []
        content {
          availability = "PREEMPTIBLE_WITH_FALLBACK_GCP"
        }
      }
    }
  }

  task {
    task_key        = "stream"
    job_cluster_key = "stream"

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "stream",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--mlflow-tracking-uri", var.mlflow_tracking_uri,
        "--log-level", var.log_level,
        "--trigger-seconds", var.stream_trigger_seconds,
        "--max-files-per-trigger", var.stream_max_files_per_trigger,
      ]
    }
  }

  # The cluster resolves {{secrets/...}} when it starts: the secret must exist by then.
  depends_on = [databricks_secret.alert_webhook_url]
}

# ---- scheduled retrain: retrain -> metrics, and rescore (its own job) once the retrain succeeded -----

resource "databricks_job" "retrain" {
  name        = "${var.name_prefix}-retrain"
  description = "xray retrain, then xray metrics; triggers the rescore job after a successful retrain."
  tags        = local.job_tags

  schedule {
    quartz_cron_expression = var.retrain_cron
    timezone_id            = "UTC"
    pause_status           = var.retrain_paused ? "PAUSED" : "UNPAUSED"
  }
  max_concurrent_runs = 1
  timeout_seconds     = var.batch_timeout_seconds
  queue {
    enabled = true
  }

  dynamic "email_notifications" {
    for_each = length(var.alert_emails) > 0 ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  dynamic "run_as" {
    for_each = var.run_as_service_principal == "" ? [] : [var.run_as_service_principal]
    content {
      service_principal_name = run_as.value
    }
  }

  job_cluster {
    job_cluster_key = "batch"
    new_cluster {
      spark_version      = local.spark_version
      node_type_id       = local.node_type_id
      num_workers        = var.batch_num_workers
      data_security_mode = "SINGLE_USER"
      single_user_name   = local.job_run_as
      spark_conf         = local.batch_spark_conf
      spark_env_vars     = local.xray_env
      custom_tags        = local.batch_cluster_tags

      dynamic "aws_attributes" {
        for_each = var.cloud == "aws" ? [1] : []
        content {
          availability           = "SPOT_WITH_FALLBACK"
          first_on_demand        = 1
          zone_id                = var.aws_zone_id
          spot_bid_price_percent = 100
        }
      }
      dynamic "azure_attributes" {
        for_each = var.cloud == "azure" ? [1] : []
        content {
          availability       = "SPOT_WITH_FALLBACK_AZURE"
          first_on_demand    = 1
          spot_bid_max_price = -1
        }
      }
      dynamic "gcp_attributes" {
        for_each = var.cloud == "gcp" ? [1] : []
        content {
          availability = "PREEMPTIBLE_WITH_FALLBACK_GCP"
        }
      }
    }
  }

  # Tasks in alphabetical order of task_key (the provider keeps them as an ordered list).
  task {
    task_key        = "metrics"
    job_cluster_key = "batch"
    depends_on {
      task_key = "retrain"
    }

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "metrics",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--mlflow-tracking-uri", var.mlflow_tracking_uri,
        "--log-level", var.log_level,
      ]
    }
  }

  # Runs in parallel with metrics: a newly promoted champion re-scores older gold predictions.
  task {
    task_key = "rescore"
    depends_on {
      task_key = "retrain"
    }

    run_job_task {
      job_id = databricks_job.rescore.id
    }
  }

  task {
    task_key        = "retrain"
    job_cluster_key = "batch"
    max_retries     = 1

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "retrain",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--mlflow-tracking-uri", var.mlflow_tracking_uri,
        "--log-level", var.log_level,
      ]
    }
  }
}

# ---- rescore: run by the retrain job (run_job_task), or by hand with `databricks jobs run-now` -------

resource "databricks_job" "rescore" {
  name        = "${var.name_prefix}-rescore"
  description = "xray rescore: re-score gold predictions made by older models with the current champion."
  tags        = local.job_tags

  max_concurrent_runs = 1
  timeout_seconds     = var.batch_timeout_seconds
  queue {
    enabled = true
  }

  dynamic "email_notifications" {
    for_each = length(var.alert_emails) > 0 ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  dynamic "run_as" {
    for_each = var.run_as_service_principal == "" ? [] : [var.run_as_service_principal]
    content {
      service_principal_name = run_as.value
    }
  }

  job_cluster {
    job_cluster_key = "batch"
    new_cluster {
      spark_version      = local.spark_version
      node_type_id       = local.node_type_id
      num_workers        = var.batch_num_workers
      data_security_mode = "SINGLE_USER"
      single_user_name   = local.job_run_as
      spark_conf         = local.batch_spark_conf
      spark_env_vars     = local.xray_env
      custom_tags        = local.batch_cluster_tags

      dynamic "aws_attributes" {
        for_each = var.cloud == "aws" ? [1] : []
        content {
          availability           = "SPOT_WITH_FALLBACK"
          first_on_demand        = 1
          zone_id                = var.aws_zone_id
          spot_bid_price_percent = 100
        }
      }
      dynamic "azure_attributes" {
        for_each = var.cloud == "azure" ? [1] : []
        content {
          availability       = "SPOT_WITH_FALLBACK_AZURE"
          first_on_demand    = 1
          spot_bid_max_price = -1
        }
      }
      dynamic "gcp_attributes" {
        for_each = var.cloud == "gcp" ? [1] : []
        content {
          availability = "PREEMPTIBLE_WITH_FALLBACK_GCP"
        }
      }
    }
  }

  task {
    task_key        = "rescore"
    job_cluster_key = "batch"
    max_retries     = 1

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "rescore",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--mlflow-tracking-uri", var.mlflow_tracking_uri,
        "--log-level", var.log_level,
      ]
    }
  }
}

# ---- Kaggle ingestion: download the dataset and stage it into the landing volume -------------------

resource "databricks_job" "ingest_kaggle" {
  name        = "${var.name_prefix}-ingest-kaggle"
  description = "xray ingest-kaggle: download the Kaggle chest X-ray dataset and stage it into landing (run on demand)."
  tags        = local.job_tags

  max_concurrent_runs = 1
  timeout_seconds     = var.batch_timeout_seconds
  queue {
    enabled = true
  }

  dynamic "email_notifications" {
    for_each = length(var.alert_emails) > 0 ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  dynamic "run_as" {
    for_each = var.run_as_service_principal == "" ? [] : [var.run_as_service_principal]
    content {
      service_principal_name = run_as.value
    }
  }

  job_cluster {
    job_cluster_key = "ingest"
    new_cluster {
      spark_version      = local.spark_version
      node_type_id       = local.node_type_id
      num_workers        = 0
      data_security_mode = "SINGLE_USER"
      single_user_name   = local.job_run_as
      spark_conf         = local.ingest_spark_conf
      # Only this cluster gets the Kaggle credentials, resolved from the secret scope at cluster start.
      spark_env_vars = merge(local.xray_env, local.kaggle_env)
      custom_tags    = local.ingest_cluster_tags

      dynamic "aws_attributes" {
        for_each = var.cloud == "aws" ? [1] : []
        content {
          availability           = "SPOT_WITH_FALLBACK"
          first_on_demand        = 1
          zone_id                = var.aws_zone_id
          spot_bid_price_percent = 100
        }
      }
      dynamic "azure_attributes" {
        for_each = var.cloud == "azure" ? [1] : []
        content {
          availability       = "SPOT_WITH_FALLBACK_AZURE"
          first_on_demand    = 1
          spot_bid_max_price = -1
        }
      }
      dynamic "gcp_attributes" {
        for_each = var.cloud == "gcp" ? [1] : []
        content {
          availability = "PREEMPTIBLE_WITH_FALLBACK_GCP"
        }
      }
    }
  }

  task {
    task_key        = "ingest_kaggle"
    job_cluster_key = "ingest"
    max_retries     = 2

    min_retry_interval_millis = 60000

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "ingest-kaggle",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--log-level", var.log_level,
        "--dataset", var.kaggle_dataset,
        "--download-dir", var.kaggle_download_dir,
      ]
    }
  }

  depends_on = [databricks_secret.kaggle_username, databricks_secret.kaggle_key]
}

# ---- scheduled maintenance: compact, checkpoint, vacuum, orphan removal (safe beside the stream) -----

resource "databricks_job" "maintain" {
  name        = "${var.name_prefix}-maintain"
  description = "xray maintain: compact small files, checkpoint the Delta logs, vacuum replaced files after the retention, remove never-committed files."
  tags        = local.job_tags

  schedule {
    quartz_cron_expression = var.maintain_cron
    timezone_id            = "UTC"
    pause_status           = var.maintain_paused ? "PAUSED" : "UNPAUSED"
  }
  max_concurrent_runs = 1
  timeout_seconds     = var.batch_timeout_seconds
  queue {
    enabled = true
  }

  dynamic "email_notifications" {
    for_each = length(var.alert_emails) > 0 ? [var.alert_emails] : []
    content {
      on_failure = email_notifications.value
    }
  }

  dynamic "run_as" {
    for_each = var.run_as_service_principal == "" ? [] : [var.run_as_service_principal]
    content {
      service_principal_name = run_as.value
    }
  }

  job_cluster {
    job_cluster_key = "maintain"
    new_cluster {
      spark_version = local.spark_version
      node_type_id  = local.node_type_id
      # delta-rs on the driver does the work (no Spark job): a single node is enough.
      num_workers        = 0
      data_security_mode = "SINGLE_USER"
      single_user_name   = local.job_run_as
      spark_conf         = local.maintain_spark_conf
      spark_env_vars     = local.xray_env
      custom_tags        = local.maintain_cluster_tags

      dynamic "aws_attributes" {
        for_each = var.cloud == "aws" ? [1] : []
        content {
          availability           = "SPOT_WITH_FALLBACK"
          first_on_demand        = 1
          zone_id                = var.aws_zone_id
          spot_bid_price_percent = 100
        }
      }
      dynamic "azure_attributes" {
        for_each = var.cloud == "azure" ? [1] : []
        content {
          availability       = "SPOT_WITH_FALLBACK_AZURE"
          first_on_demand    = 1
          spot_bid_max_price = -1
        }
      }
      dynamic "gcp_attributes" {
        for_each = var.cloud == "gcp" ? [1] : []
        content {
          availability = "PREEMPTIBLE_WITH_FALLBACK_GCP"
        }
      }
    }
  }

  task {
    task_key        = "maintain"
    job_cluster_key = "maintain"
    max_retries     = 1

    library {
      whl = local.wheel_library_path
    }

    python_wheel_task {
      package_name = "xray-lakehouse"
      entry_point  = "xray"
      parameters = [
        "maintain",
        "--lakehouse", local.lakehouse_root,
        "--delta-engine", "delta-spark",
        "--log-level", var.log_level,
        "--retention-hours", var.vacuum_retention_hours,
      ]
    }
  }
}

# ---- who may run and stop the jobs ------------------------------------------------------------------

resource "databricks_permissions" "jobs" {
  for_each = { for name, id in local.job_ids : name => id if var.operators_group != "" }

  job_id = each.value
  access_control {
    group_name       = var.operators_group
    permission_level = "CAN_MANAGE_RUN"
  }
}
