# Every input of the stack. Defaults are the cheap, safe choice: nothing runs on a schedule or
# continuously until you say so, clusters are small and stop by themselves.

# ---- workspace and naming ---------------------------------------------------------------------------

variable "databricks_profile" {
  description = "Profile of ~/.databrickscfg to authenticate with; empty: use DATABRICKS_* environment variables."
  type        = string
  default     = ""
}

variable "cloud" {
  description = "Cloud of the workspace (aws, azure or gcp): selects the spot/preemptible settings of the clusters."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["aws", "azure", "gcp"], var.cloud)
    error_message = "cloud must be aws, azure or gcp."
  }
}

variable "name_prefix" {
  description = "Prefix of every job, cluster and warehouse name, so several environments can share a workspace."
  type        = string
  default     = "xray"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name_prefix))
    error_message = "name_prefix must be lower-case letters, digits or '-', starting with a letter (max 31 chars)."
  }
}

variable "tags" {
  description = "Cost-tracking tags added to every cluster, job, warehouse and catalog object (merged with project/managed_by)."
  type        = map(string)
  default = {
    environment = "dev"
    cost_center = "xray-lakehouse"
  }
}

# ---- storage ----------------------------------------------------------------------------------------

variable "use_unity_catalog" {
  description = "true: catalog, schemas, managed volumes and SQL views in Unity Catalog. false: legacy fallback on DBFS paths and workspace files (no catalog objects, no views)."
  type        = bool
  default     = true
}

variable "create_catalog" {
  description = "Create the catalog (needs CREATE CATALOG on the metastore); false: use an existing catalog named catalog_name."
  type        = bool
  default     = true
}

variable "catalog_name" {
  description = "Unity Catalog catalog holding the bronze/silver/gold/ops schemas and the lakehouse volume."
  type        = string
  default     = "xray"
}

variable "catalog_storage_root" {
  description = "Managed storage location of a new catalog (e.g. s3://bucket/xray); empty: the metastore's default storage."
  type        = string
  default     = ""
}

variable "dbfs_root" {
  description = "Lakehouse root on DBFS when use_unity_catalog = false (a DBFS path such as /xray-lakehouse)."
  type        = string
  default     = "/xray-lakehouse"

  validation {
    condition     = startswith(var.dbfs_root, "/") && !startswith(var.dbfs_root, "/dbfs")
    error_message = "dbfs_root is a DBFS path starting with '/', without the /dbfs FUSE prefix (e.g. /xray-lakehouse)."
  }
}

# ---- secrets (values never in code: pass TF_VAR_kaggle_username / TF_VAR_kaggle_key, or leave empty and
# ---- put them with the databricks CLI so they never reach the Terraform state) ------------------------

variable "secret_scope_name" {
  description = "Databricks secret scope holding the Kaggle credentials (keys kaggle_username, kaggle_key) and, optionally, patient_id_salt."
  type        = string
  default     = "xray-lakehouse"
}

variable "kaggle_username" {
  description = "Kaggle user name stored in the secret scope; empty: Terraform does not manage the secret (put it with the CLI)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "kaggle_key" {
  description = "Kaggle API key stored in the secret scope; empty: Terraform does not manage the secret (put it with the CLI)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "patient_id_salt" {
  description = "Salt for hashing patient identifiers, stored in the secret scope and given to jobs as XRAY_PATIENT_ID_SALT; empty: the service keeps a generated salt under the lakehouse."
  type        = string
  default     = ""
  sensitive   = true
}

variable "alert_webhook_url" {
  description = "HTTPS URL the pipeline's alerts are POSTed to: stored in the secret scope (key alert_webhook_url) for the stream job (XRAY_ALERT_WEBHOOK_URL) and used as a Databricks webhook notification destination; empty: no secret, no destination."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    # The message must not echo the value: it is a credential (a Slack or Teams URL carries its token).
    condition     = var.alert_webhook_url == "" || startswith(var.alert_webhook_url, "https://")
    error_message = "alert_webhook_url must be empty or an https:// URL (Databricks notification destinations need HTTPS)."
  }
}

# ---- code -------------------------------------------------------------------------------------------

variable "wheel_path" {
  description = "The xray-lakehouse wheel built from this repository (python -m pip wheel --no-deps -w dist .), relative to infra/ or absolute."
  type        = string
  default     = "../dist/xray_lakehouse-0.1.0-py3-none-any.whl"
}

# ---- compute ----------------------------------------------------------------------------------------

variable "spark_version" {
  description = "Databricks Runtime of every cluster; empty: the latest LTS ML runtime on Scala 2.13 (Spark 4, Delta and scikit-learn built in)."
  type        = string
  default     = ""
}

variable "node_type_id" {
  description = "Instance type of every cluster node; empty: the smallest general-purpose type with 4 cores, 16 GB and a local disk."
  type        = string
  default     = ""
}

variable "aws_zone_id" {
  description = "AWS availability zone of the clusters (cloud = aws); auto lets Databricks pick the zone with capacity."
  type        = string
  default     = "auto"
}

variable "create_dev_cluster" {
  description = "Create the all-purpose cluster for notebooks and ML work (it starts once on creation, then auto-terminates)."
  type        = bool
  default     = true
}

variable "dev_cluster_user" {
  description = "User the dev cluster is dedicated to (single-user access mode); empty: the identity running Terraform."
  type        = string
  default     = ""
}

variable "dev_cluster_max_workers" {
  description = "Workers of the dev cluster: 0 is a single-node cluster (cheapest); N > 0 autoscales 1..N spot workers."
  type        = number
  default     = 0

  validation {
    condition     = var.dev_cluster_max_workers >= 0 && var.dev_cluster_max_workers <= 8
    error_message = "dev_cluster_max_workers must be between 0 and 8."
  }
}

variable "dev_cluster_autotermination_minutes" {
  description = "Idle minutes before the dev cluster stops itself."
  type        = number
  default     = 20

  validation {
    condition     = var.dev_cluster_autotermination_minutes >= 10 && var.dev_cluster_autotermination_minutes <= 120
    error_message = "dev_cluster_autotermination_minutes must be between 10 and 120 (0, never stopping, is not allowed here)."
  }
}

variable "shuffle_partitions" {
  description = "spark.sql.shuffle.partitions on every cluster (the data is small; Databricks' default 200 only adds tasks)."
  type        = number
  default     = 8
}

variable "log_level" {
  description = "Log level passed to every job as --log-level."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

# ---- jobs -------------------------------------------------------------------------------------------

variable "stream_paused" {
  description = "Pause the continuous streaming job (xray stream). true by default: nothing runs until you set it to false."
  type        = bool
  default     = true
}

variable "stream_num_workers" {
  description = "Workers of the streaming job cluster: 0 is a single node (cheapest for this data volume)."
  type        = number
  default     = 0
}

variable "stream_trigger_seconds" {
  description = "Processing-time trigger of the stream (--trigger-seconds); 10 s keeps landing-folder listings (and their storage requests) cheap."
  type        = number
  default     = 10
}

variable "stream_max_files_per_trigger" {
  description = "At most this many landing files per bronze micro-batch (--max-files-per-trigger)."
  type        = number
  default     = 1000
}

variable "batch_num_workers" {
  description = "Workers (spot, with on-demand fallback) of the retrain and rescore job clusters; 0 is a single node. Ingestion always runs on a single node."
  type        = number
  default     = 1
}

variable "batch_timeout_seconds" {
  description = "Time limit of one run of a batch job (retrain, rescore, ingestion)."
  type        = number
  default     = 7200
}

variable "retrain_cron" {
  description = "Quartz cron expression (UTC) of the retrain job; default Sundays 03:00."
  type        = string
  default     = "0 0 3 ? * SUN"
}

variable "retrain_paused" {
  description = "Pause the retrain schedule (true by default: enable it once the lakehouse holds labelled data)."
  type        = bool
  default     = true
}

variable "maintain_cron" {
  description = "Quartz cron expression (UTC) of the maintenance job (xray maintain); default every day at 04:00."
  type        = string
  default     = "0 0 4 * * ?"
}

variable "maintain_paused" {
  description = "Pause the maintenance schedule (true by default, like retrain: enable it once the stream runs)."
  type        = bool
  default     = true
}

variable "vacuum_retention_hours" {
  description = "Hours a file replaced by compaction stays for time travel and replays before the maintenance job deletes it (168 = 7 days; less is refused by Delta's usual check and warned about)."
  type        = number
  default     = 168
}

variable "kaggle_dataset" {
  description = "Kaggle dataset staged by the ingestion job (--dataset)."
  type        = string
  default     = "paultimothymooney/chest-xray-pneumonia"
}

variable "kaggle_download_dir" {
  description = "Where the ingestion job downloads and extracts the archive (--download-dir): the driver's local disk, not the volume."
  type        = string
  default     = "/local_disk0/tmp/xray-kaggle"
}

variable "mlflow_tracking_uri" {
  description = "MLflow tracking URI passed to jobs as --mlflow-tracking-uri; databricks is the workspace's managed MLflow (a SQLite file on a volume does not work)."
  type        = string
  default     = "databricks"
}

variable "mlflow_registry_uri" {
  description = "MLflow model registry URI (XRAY_MLFLOW_REGISTRY_URI); empty: databricks-uc with Unity Catalog, else databricks."
  type        = string
  default     = ""
}

variable "model_name" {
  description = "Registered model name; with Unity Catalog it becomes <catalog>.gold.<model_name> (XRAY_MODEL_NAME)."
  type        = string
  default     = "xray_pneumonia_classifier"
}

variable "alert_emails" {
  description = "Addresses told when a job run fails, and subscribed to the SQL alerts."
  type        = list(string)
  default     = []
}

variable "run_as_service_principal" {
  description = "Application id of a service principal the jobs run as (recommended for CI); empty: the identity running Terraform."
  type        = string
  default     = ""
}

# ---- alerts: thresholds of the Databricks SQL alerts (alerts.tf), the same signals the service raises -----

variable "quarantine_rate_threshold" {
  description = "SQL alert quarantine_rate: triggered when more than this share (0-1] of the images silver received in the last hour was quarantined."
  type        = number
  default     = 0.1

  validation {
    condition     = var.quarantine_rate_threshold > 0 && var.quarantine_rate_threshold <= 1
    error_message = "quarantine_rate_threshold is a share of images: more than 0, at most 1."
  }
}

variable "drift_psi_threshold" {
  description = "SQL alert drift: triggered when the largest drift_psi (population stability index) logged in the last hour exceeds this (0.25 is the usual 'major shift')."
  type        = number
  default     = 0.25

  validation {
    condition     = var.drift_psi_threshold > 0 && var.drift_psi_threshold <= 10
    error_message = "drift_psi_threshold must be more than 0 and at most 10."
  }
}

variable "stream_stall_minutes" {
  description = "SQL alert stream_stalled: triggered when the newest bronze batch is older than this many minutes while it reported landing files waiting."
  type        = number
  default     = 30

  validation {
    condition     = var.stream_stall_minutes >= 5 && var.stream_stall_minutes <= 1440
    error_message = "stream_stall_minutes must be between 5 and 1440 (a day)."
  }
}

variable "backlog_age_minutes" {
  description = "SQL alert backlog_age: triggered when a landing file arriving now would wait longer than this many minutes (the backlog over the last hour's ingestion rate)."
  type        = number
  default     = 60

  validation {
    condition     = var.backlog_age_minutes >= 5 && var.backlog_age_minutes <= 10080
    error_message = "backlog_age_minutes must be between 5 and 10080 (a week)."
  }
}

variable "sql_alerts_cron" {
  description = "Quartz cron expression (UTC) of the job evaluating the SQL alerts; each run wakes the SQL warehouse (see README, Costs). Default: hourly."
  type        = string
  default     = "0 0 * * * ?"

  validation {
    condition     = length(split(" ", trimspace(var.sql_alerts_cron))) >= 6 && length(split(" ", trimspace(var.sql_alerts_cron))) <= 7
    error_message = "sql_alerts_cron is a Quartz expression: seconds minutes hours day-of-month month day-of-week [year]."
  }
}

variable "sql_alerts_paused" {
  description = "Pause the schedule of the SQL alerts job (true by default, like the stream: enable it once the stream runs)."
  type        = bool
  default     = true
}

# ---- SQL --------------------------------------------------------------------------------------------

variable "warehouse_size" {
  description = "Cluster size of the serverless SQL warehouse."
  type        = string
  default     = "2X-Small"
}

variable "warehouse_auto_stop_mins" {
  description = "Idle minutes before the serverless SQL warehouse stops (billing stops with it)."
  type        = number
  default     = 10

  validation {
    condition     = var.warehouse_auto_stop_mins >= 5 && var.warehouse_auto_stop_mins <= 120
    error_message = "warehouse_auto_stop_mins must be between 5 and 120 (0, never stopping, is not allowed here)."
  }
}

variable "create_sql_views" {
  description = "Create the SQL views over the Delta tables. Views need their tables to exist: set true after the stream (and xray metrics) ran once."
  type        = bool
  default     = false
}

variable "sql_readers_group" {
  description = "Group allowed to use the SQL warehouse and read the views; empty: no grants."
  type        = string
  default     = ""
}

variable "operators_group" {
  description = "Group allowed to run/stop the jobs and restart the dev cluster; empty: no extra permissions."
  type        = string
  default     = ""
}
