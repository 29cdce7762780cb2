# SQL access: a serverless SQL warehouse and views over the lakehouse's Delta tables.
#
# The Delta tables live as files in the lakehouse volume (<root>/tables/<name>). Unity Catalog does not
# register tables on volume paths, so each table is exposed as a view over its Delta path, in the schema
# of its layer. A view needs its table to exist: create_sql_views stays false until the stream (and
# `xray metrics`, which writes gold_dataset_summary) ran once; see README.

resource "databricks_sql_endpoint" "this" {
  name                      = "${var.name_prefix}-sql"
  cluster_size              = var.warehouse_size
  min_num_clusters          = 1
  max_num_clusters          = 1
  auto_stop_mins            = var.warehouse_auto_stop_mins
  enable_serverless_compute = true
  warehouse_type            = "PRO"
  enable_photon             = true
  spot_instance_policy      = "COST_OPTIMIZED"

  tags {
    dynamic "custom_tags" {
      for_each = local.tags
      content {
        key   = custom_tags.key
        value = custom_tags.value
      }
    }
  }
}

locals {
  # View name (= table name in streaming/lakehouse/catalog.py) -> schema (= the table's layer).
  sql_views = {
    bronze_kaggle_dataset_info = "bronze"
    silver_xray_metadata       = "silver"
    silver_quarantine          = "silver"
    gold_pneumonia_predictions = "gold"
    gold_model_performance     = "gold"
    gold_dataset_summary       = "gold"
    gold_radiologist_feedback  = "gold"
    pipeline_events            = "ops"
    pipeline_alerts            = "ops"
    audit_log                  = "ops"
    forget_list                = "ops"
    retrain_runs               = "ops"
  }
}

resource "databricks_sql_table" "view" {
  for_each = { for name, schema in local.sql_views : name => schema if local.uc && var.create_sql_views }

  name            = each.key
  catalog_name    = local.catalog_name
  schema_name     = databricks_schema.layer[each.value].name
  table_type      = "VIEW"
  warehouse_id    = databricks_sql_endpoint.this.id
  view_definition = "SELECT * FROM delta.`${local.tables_root}/${each.key}`"
  comment         = "Delta table ${each.key} of the xray lakehouse (${each.value} layer), read from ${local.tables_root}/${each.key}."

  depends_on = [databricks_volume.lakehouse]
}

# ---- grants -----------------------------------------------------------------------------------------

resource "databricks_permissions" "warehouse" {
  count = var.sql_readers_group == "" ? 0 : 1

  sql_endpoint_id = databricks_sql_endpoint.this.id
  access_control {
    group_name       = var.sql_readers_group
    permission_level = "CAN_USE"
  }
}

resource "databricks_grant" "readers_catalog" {
  count = local.uc && var.sql_readers_group != "" ? 1 : 0

  catalog    = local.catalog_name
  principal  = var.sql_readers_group
  privileges = ["USE_CATALOG"]
}

# Readers see the views of gold and ops (aggregates, predictions, pipeline health), not the raw layers.
resource "databricks_grant" "readers_schema" {
  for_each = { for name in ["gold", "ops"] : name => name if local.uc && var.sql_readers_group != "" }

  schema     = databricks_schema.layer[each.key].id
  principal  = var.sql_readers_group
  privileges = ["USE_SCHEMA", "SELECT"]
}

# The jobs' service principal: read and write the lakehouse volume, register models in gold.
resource "databricks_grant" "run_as_catalog" {
  count = local.uc && var.run_as_service_principal != "" ? 1 : 0

  catalog   = local.catalog_name
  principal = var.run_as_service_principal
  privileges = [
    "USE_CATALOG", "USE_SCHEMA", "SELECT", "MODIFY", "READ_VOLUME", "WRITE_VOLUME", "CREATE_MODEL", "EXECUTE",
  ]
}
