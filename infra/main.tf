# Shared values: where the lakehouse lives, how every cluster is configured, what every job passes.
# Resources are split by kind: storage.tf (catalog, volumes, wheel, secrets), compute.tf (dev cluster),
# jobs.tf (the jobs calling the `xray` entry point), sql.tf (warehouse, views, grants), alerts.tf (alert
# webhook secret and destinations, SQL alerts and the job evaluating them).

data "databricks_current_user" "me" {}

# Latest LTS ML runtime: Spark 4 (the service's Python data source API), Delta built in, scikit-learn,
# pandas and MLflow preinstalled, so the wheel's own dependencies mostly resolve to what is there.
data "databricks_spark_version" "ml_lts" {
  count             = var.spark_version == "" ? 1 : 0
  ml                = true
  long_term_support = true
  scala             = "2.13"
}

# Smallest node with 4 cores, 16 GB and a local disk (m5d.xlarge-class on AWS; cloud-neutral lookup).
data "databricks_node_type" "small" {
  count         = var.node_type_id == "" ? 1 : 0
  local_disk    = true
  min_cores     = 4
  min_memory_gb = 16
}

locals {
  # ---- cost tracking: on every cluster, job, warehouse and catalog object ---------------------------
  tags = merge(var.tags, {
    project    = "xray-lakehouse"
    managed_by = "terraform"
  })

  uc = var.use_unity_catalog

  # ---- storage -----------------------------------------------------------------------------------
  # Medallion schemas; "ops" holds the files (volumes) and operational views (pipeline_events).
  schema_comments = {
    bronze = "Bronze: raw X-ray files and dataset downloads as they arrived."
    silver = "Silver: one row per valid image (metadata, features) and the quarantine."
    gold   = "Gold: predictions, model performance, dataset summary; the registered model."
    ops    = "Operations: lakehouse and artifact volumes, pipeline events."
  }
  catalog_name = local.uc && var.create_catalog ? databricks_catalog.xray[0].name : var.catalog_name

  # The service keeps everything under one root (landing/, tables/, checkpoints/, mlflow/, reports/).
  # Unity Catalog: a managed volume, the same path for Spark and for Python file APIs.
  # Fallback: a DBFS folder through the /dbfs FUSE mount (see README, "Without Unity Catalog").
  lakehouse_root = local.uc ? "/Volumes/${var.catalog_name}/ops/lakehouse" : "/dbfs${var.dbfs_root}"
  tables_root    = "${local.lakehouse_root}/tables"
  landing_path   = "${local.lakehouse_root}/landing"

  # ---- the wheel ---------------------------------------------------------------------------------
  wheel_file         = basename(var.wheel_path)
  wheel_source       = startswith(var.wheel_path, "/") ? var.wheel_path : abspath("${path.module}/${var.wheel_path}")
  wheel_sha256       = fileexists(local.wheel_source) ? filesha256(local.wheel_source) : ""
  wheel_volume_path  = "/Volumes/${var.catalog_name}/ops/artifacts/wheels/${local.wheel_file}"
  wheel_library_path = one(concat(databricks_file.wheel[*].path, databricks_workspace_file.wheel[*].workspace_path))

  # ---- secrets -----------------------------------------------------------------------------------
  # Whether Terraform manages the secret values (only whether they are set is non-sensitive).
  kaggle_secrets_managed = nonsensitive(var.kaggle_username != "" && var.kaggle_key != "")
  salt_in_scope          = nonsensitive(var.patient_id_salt != "")
  secret_scope           = databricks_secret_scope.this.name
  kaggle_env = {
    KAGGLE_USERNAME = "{{secrets/${local.secret_scope}/kaggle_username}}"
    KAGGLE_KEY      = "{{secrets/${local.secret_scope}/kaggle_key}}"
  }

  # ---- MLflow: the workspace's managed tracking server and (with UC) the UC model registry ---------
  registry_uri = var.mlflow_registry_uri != "" ? var.mlflow_registry_uri : (local.uc ? "databricks-uc" : "databricks")
  model_name   = local.uc ? "${var.catalog_name}.gold.${var.model_name}" : var.model_name

  # ---- cluster configuration shared by every cluster ---------------------------------------------
  # XRAY_* are the service's own settings (streaming/config.py); the jobs also pass them as options.
  xray_env_base = {
    XRAY_LAKEHOUSE           = local.lakehouse_root
    XRAY_DELTA_ENGINE        = "delta-spark"
    XRAY_MLFLOW_TRACKING_URI = var.mlflow_tracking_uri
    XRAY_MLFLOW_REGISTRY_URI = local.registry_uri
    XRAY_MODEL_NAME          = local.model_name
    XRAY_LOG_LEVEL           = var.log_level
  }
  salt_env = { XRAY_PATIENT_ID_SALT = "{{secrets/${local.secret_scope}/patient_id_salt}}" }
  xray_env = local.salt_in_scope ? merge(local.xray_env_base, local.salt_env) : local.xray_env_base

  # On Databricks the service reuses the runtime's session, so the settings its local session builder
  # applies (streaming/session.py) are set here. Delta needs nothing: the runtime has it built in, and
  # every job passes --delta-engine delta-spark so the native `delta` format is used (never delta-rs).
  spark_conf = {
    "spark.sql.session.timeZone"                             = "UTC"
    "spark.sql.shuffle.partitions"                           = tostring(var.shuffle_partitions)
    "spark.sql.execution.arrow.pyspark.enabled"              = "true"
    "spark.sql.streaming.stopGracefullyOnShutdown"           = "true"
    "spark.sql.streaming.minBatchesToRetain"                 = "20"
    "spark.sql.sources.parallelPartitionDiscovery.threshold" = "100000"
  }
  single_node_spark_conf = {
    "spark.databricks.cluster.profile" = "singleNode"
    "spark.master"                     = "local[*, 4]"
  }
  single_node_tags = { ResourceClass = "SingleNode" }

  # 0 workers: a single-node cluster (Spark runs on the driver), which needs these settings and tag.
  stream_spark_conf   = var.stream_num_workers == 0 ? merge(local.spark_conf, local.single_node_spark_conf) : local.spark_conf
  stream_cluster_tags = var.stream_num_workers == 0 ? merge(local.tags, local.single_node_tags) : local.tags
  batch_spark_conf    = var.batch_num_workers == 0 ? merge(local.spark_conf, local.single_node_spark_conf) : local.spark_conf
  batch_cluster_tags  = var.batch_num_workers == 0 ? merge(local.tags, local.single_node_tags) : local.tags
  dev_spark_conf      = var.dev_cluster_max_workers == 0 ? merge(local.spark_conf, local.single_node_spark_conf) : local.spark_conf
  dev_cluster_tags    = var.dev_cluster_max_workers == 0 ? merge(local.tags, local.single_node_tags) : local.tags
  # Ingestion is a download on the driver: always a single node.
  ingest_spark_conf   = merge(local.spark_conf, local.single_node_spark_conf)
  ingest_cluster_tags = merge(local.tags, local.single_node_tags)
  # Maintenance is delta-rs on the driver: a single node too.
  maintain_spark_conf   = merge(local.spark_conf, local.single_node_spark_conf)
  maintain_cluster_tags = merge(local.tags, local.single_node_tags)

  spark_version = var.spark_version != "" ? var.spark_version : data.databricks_spark_version.ml_lts[0].id
  node_type_id  = var.node_type_id != "" ? var.node_type_id : data.databricks_node_type.small[0].id

  # Identity the job clusters are dedicated to: the jobs' run-as identity (for a service principal,
  # data.databricks_current_user's user_name is its application id).
  job_run_as = var.run_as_service_principal != "" ? var.run_as_service_principal : data.databricks_current_user.me.user_name

  # Job tags also reach the job clusters; the wheel digest makes a new wheel a job change, so
  # control_run_state restarts the continuous stream on the new code.
  job_tags = merge(local.tags, { xray_wheel = substr(local.wheel_sha256, 0, 12) })
}
