# Storage: Unity Catalog catalog, medallion schemas and managed volumes for the lakehouse files and the
# wheel; the wheel upload; the secret scope. Every Unity Catalog object has count/for_each on
# var.use_unity_catalog, so the same code deploys the DBFS fallback with none of them.

resource "databricks_catalog" "xray" {
  count = local.uc && var.create_catalog ? 1 : 0

  name         = var.catalog_name
  comment      = "xray-lakehouse: chest X-ray medallion lakehouse (managed by Terraform)."
  storage_root = var.catalog_storage_root == "" ? null : var.catalog_storage_root
  properties   = local.tags
  # Never drop a catalog that still holds data: empty it by hand first.
  force_destroy = false
}

resource "databricks_schema" "layer" {
  for_each = { for name, comment in local.schema_comments : name => comment if local.uc }

  catalog_name  = local.catalog_name
  name          = each.key
  comment       = each.value
  properties    = local.tags
  force_destroy = false
}

# The lakehouse root: landing/, tables/ (path-based Delta tables), checkpoints/, mlflow/, reports/.
# Managed: storage comes from the catalog/metastore location, no external location or IAM role to set up.
resource "databricks_volume" "lakehouse" {
  count = local.uc ? 1 : 0

  name         = "lakehouse"
  catalog_name = local.catalog_name
  schema_name  = databricks_schema.layer["ops"].name
  volume_type  = "MANAGED"
  comment      = "xray-lakehouse root: landing zone, Delta tables, streaming checkpoints, reports."
}

# Build artifacts, kept apart from the data so job identities need only READ VOLUME here.
resource "databricks_volume" "artifacts" {
  count = local.uc ? 1 : 0

  name         = "artifacts"
  catalog_name = local.catalog_name
  schema_name  = databricks_schema.layer["ops"].name
  volume_type  = "MANAGED"
  comment      = "xray-lakehouse wheels installed by the jobs and the dev cluster."
}

# ---- the wheel built from this repository -----------------------------------------------------------

# Changes when the wheel's bytes change, so the upload below is replaced even if the file name is the same.
resource "terraform_data" "wheel" {
  input = local.wheel_sha256

  lifecycle {
    precondition {
      condition     = local.wheel_sha256 != ""
      error_message = "Wheel not found at var.wheel_path. Build it first from the repository root: python -m pip wheel --no-deps -w dist . (or python -m build --wheel)."
    }
  }
}

resource "databricks_file" "wheel" {
  count = local.uc ? 1 : 0

  source = local.wheel_source
  path   = local.wheel_volume_path

  depends_on = [databricks_volume.artifacts]
  lifecycle {
    replace_triggered_by = [terraform_data.wheel]
  }
}

# Fallback without Unity Catalog: workspace files (libraries on the DBFS root are disabled on recent
# runtimes). In the deploying identity's home folder, not /Shared, so other users cannot swap the wheel.
resource "databricks_workspace_file" "wheel" {
  count = local.uc ? 0 : 1

  source = local.wheel_source
  path   = "${data.databricks_current_user.me.home}/.xray-lakehouse/wheels/${local.wheel_file}"

  lifecycle {
    replace_triggered_by = [terraform_data.wheel]
  }
}

# ---- secrets -----------------------------------------------------------------------------------------

# Databricks-backed scope; clusters read it through {{secrets/<scope>/<key>}} references only.
resource "databricks_secret_scope" "this" {
  name = var.secret_scope_name
}

# Managed by Terraform only when the values are given (TF_VAR_kaggle_username / TF_VAR_kaggle_key);
# otherwise put them with `databricks secrets put-secret` and they never reach the state.
resource "databricks_secret" "kaggle_username" {
  count = local.kaggle_secrets_managed ? 1 : 0

  scope        = databricks_secret_scope.this.id
  key          = "kaggle_username"
  string_value = var.kaggle_username
}

resource "databricks_secret" "kaggle_key" {
  count = local.kaggle_secrets_managed ? 1 : 0

  scope        = databricks_secret_scope.this.id
  key          = "kaggle_key"
  string_value = var.kaggle_key
}

resource "databricks_secret" "patient_id_salt" {
  count = local.salt_in_scope ? 1 : 0

  scope        = databricks_secret_scope.this.id
  key          = "patient_id_salt"
  string_value = var.patient_id_salt
}

# A service principal running the jobs must read the scope (the deploying identity owns it already).
resource "databricks_secret_acl" "run_as" {
  count = var.run_as_service_principal == "" ? 0 : 1

  scope      = databricks_secret_scope.this.name
  principal  = var.run_as_service_principal
  permission = "READ"
}
