output "lakehouse_root" {
  description = "Lakehouse root every job passes as --lakehouse (Unity Catalog volume, or /dbfs path in the fallback)."
  value       = local.lakehouse_root
}

output "landing_path" {
  description = "Landing zone: copy X-ray files here (databricks fs cp ... dbfs:<path>) and the stream picks them up."
  value       = local.landing_path
}

output "wheel_library_path" {
  description = "Where the xray-lakehouse wheel was uploaded; every job task and the dev cluster install it from here."
  value       = local.wheel_library_path
}

output "catalog" {
  description = "Unity Catalog catalog of the schemas, volumes and views (null without Unity Catalog)."
  value       = local.uc ? local.catalog_name : null
}

output "secret_scope" {
  description = "Secret scope holding kaggle_username, kaggle_key (and patient_id_salt, alert_webhook_url when set)."
  value       = databricks_secret_scope.this.name
}

output "job_ids" {
  description = "Job ids, for databricks jobs run-now <id> / get-run-output."
  value       = local.job_ids
}

output "job_urls" {
  description = "Job pages in the workspace."
  value = {
    stream        = databricks_job.stream.url
    retrain       = databricks_job.retrain.url
    rescore       = databricks_job.rescore.url
    ingest_kaggle = databricks_job.ingest_kaggle.url
    maintain      = databricks_job.maintain.url
  }
}

output "sql_warehouse_id" {
  description = "Id of the serverless SQL warehouse."
  value       = databricks_sql_endpoint.this.id
}

output "sql_warehouse_jdbc_url" {
  description = "JDBC URL of the SQL warehouse (authenticate with a token or OAuth; no credential is in it)."
  value       = databricks_sql_endpoint.this.jdbc_url
}

output "sql_views" {
  description = "Fully qualified names of the views over the Delta tables (empty until create_sql_views = true)."
  value       = sort([for view in databricks_sql_table.view : view.id])
}

output "sql_alert_ids" {
  description = "Databricks SQL alert ids by signal (empty until create_sql_views = true); the sql_alerts job in job_ids evaluates them."
  value       = { for name, alert in databricks_alert.pipeline : name => alert.id }
}

output "dev_cluster_id" {
  description = "Id of the all-purpose dev cluster (null when create_dev_cluster = false)."
  value       = one(databricks_cluster.dev[*].id)
}
