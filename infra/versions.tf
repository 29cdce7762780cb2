# Terraform and provider pins. The databricks provider talks to one workspace; it reads its host and
# credentials from the environment (DATABRICKS_HOST + DATABRICKS_TOKEN, or DATABRICKS_CONFIG_PROFILE /
# ~/.databrickscfg, or OAuth M2M: DATABRICKS_CLIENT_ID + DATABRICKS_CLIENT_SECRET), never from this code.

terraform {
  # 1.5+: check blocks, startswith(), terraform_data and import blocks are used or recommended here.
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    databricks = {
      source = "databricks/databricks"
      # >= 1.60 (no_wait on clusters, databricks_file on volumes, control_run_state, queue) and < 2.0.
      version = "~> 1.60"
    }
  }

  # State holds the Kaggle secret values when Terraform manages them (see README, "Secrets"): keep it
  # in an encrypted remote backend. Example, filled in per environment with `terraform init -backend-config=...`:
  # backend "s3" {}
}

provider "databricks" {
  # Empty on purpose: every setting comes from the environment or a named profile (see README).
  profile = var.databricks_profile == "" ? null : var.databricks_profile
}
