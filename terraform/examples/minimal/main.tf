# The smallest install: bundled Postgres and Redis, a realm created in the company's Keycloak,
# the chart from this repository, and one business unit.

variable "keycloak_admin_password" {
  type        = string
  description = "Password of the Keycloak administrator (master realm, admin-cli)."
  sensitive   = true
}

module "cove" {
  source = "../.."

  kube_context = "corp-cluster"
  namespace    = "cove"
  domain       = "corp.example.com"

  keycloak_url            = "https://sso.corp.example.com"
  keycloak_admin_username = "admin"
  keycloak_admin_password = var.keycloak_admin_password

  database_mode = "bundled"
  redis_mode    = "bundled"

  business_units = {
    demo = { gpu_quota = 1 }
  }
}

output "console_url" {
  description = "Where the console answers."
  value       = module.cove.console_url
}

output "openai_base_url" {
  description = "Base URL to give OpenAI-compatible IDE clients."
  value       = module.cove.openai_base_url
}
