# The all-purpose cluster for notebooks and ML work on the lakehouse. Jobs never use it: each job has its
# own job cluster (cheaper jobs-compute rate, gone when the run ends).
#
# The Clusters API has no "create stopped": creation starts the cluster. no_wait = true returns as soon as
# it is requested (libraries install asynchronously) and autotermination stops it after
# dev_cluster_autotermination_minutes idle, so an apply costs at most that much idle time.

resource "databricks_cluster" "dev" {
  count = var.create_dev_cluster ? 1 : 0

  cluster_name            = "${var.name_prefix}-dev"
  spark_version           = local.spark_version
  node_type_id            = local.node_type_id
  autotermination_minutes = var.dev_cluster_autotermination_minutes
  no_wait                 = true
  # Not pinned: pinning needs a workspace admin and only matters for clusters managed outside Terraform.
  is_pinned = false

  # Dedicated (single-user) access mode: Unity Catalog volumes work, and the classic Py4J gateway the
  # delta-spark engine check uses (streaming/lakehouse.py) is available; standard/shared mode has no JVM access.
  data_security_mode = "SINGLE_USER"
  single_user_name   = var.dev_cluster_user != "" ? var.dev_cluster_user : data.databricks_current_user.me.user_name

  # 0: single node; 1: one fixed worker; N > 1: autoscale 1..N.
  num_workers = var.dev_cluster_max_workers <= 1 ? var.dev_cluster_max_workers : null
  dynamic "autoscale" {
    for_each = var.dev_cluster_max_workers > 1 ? [var.dev_cluster_max_workers] : []
    content {
      min_workers = 1
      max_workers = autoscale.value
    }
  }

  spark_conf     = local.dev_spark_conf
  spark_env_vars = local.xray_env
  custom_tags    = local.dev_cluster_tags

  # Workers on spot with on-demand fallback; the first node (the driver) on demand so a spot reclaim
  # never kills the notebook session.
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

  library {
    whl = local.wheel_library_path
  }
}

resource "databricks_permissions" "dev_cluster" {
  count = var.create_dev_cluster && var.operators_group != "" ? 1 : 0

  cluster_id = databricks_cluster.dev[0].id
  access_control {
    group_name       = var.operators_group
    permission_level = "CAN_RESTART"
  }
}
