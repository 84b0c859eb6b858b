# A production install: external Postgres and Redis, an existing Keycloak realm reached with
# client credentials, a certificate from cert-manager, images from an internal mirror, GPU node
# placement, several business units with GPU ceilings, telemetry and Prometheus.

variable "keycloak_client_secret" {
  type        = string
  description = "Secret of the Keycloak client `terraform` (service account with realm-admin in the cove realm)."
  sensitive   = true
}

variable "database_url" {
  type        = string
  description = "Owner login of the Cove database on the company's Postgres."
  sensitive   = true
}

variable "app_database_url" {
  type        = string
  description = "Login of the non-owner role cove_app on the same database."
  sensitive   = true
}

variable "redis_url" {
  type        = string
  description = "URL of the company's Redis (TLS)."
  sensitive   = true
}

module "cove" {
  source = "../.."

  kubeconfig_path  = "~/.kube/corp-prod"
  kube_context     = "corp-prod"
  namespace        = "cove"
  create_namespace = true
  release_name     = "cove"

  chart = {
    repository = "oci://registry.corp.example.com/charts"
    name       = "cove"
    version    = "0.1.0"
  }

  image_registry          = "registry.corp.example.com/mirror"
  image_pull_secret_names = ["corp-registry"]

  domain                       = "corp.example.com"
  console_hostname             = "cove.corp.example.com"
  gateway_hostname             = "code-api.corp.example.com"
  ingress_class_name           = "nginx"
  ingress_controller_namespace = "ingress-nginx"
  tls_secret_name              = "cove-tls"
  tls_cluster_issuer           = "corp-ca"

  keycloak_url                 = "https://sso.corp.example.com"
  keycloak_realm               = "engineering"
  create_keycloak_realm        = false
  keycloak_admin_realm         = "engineering"
  keycloak_admin_client_id     = "terraform"
  keycloak_admin_client_secret = var.keycloak_client_secret
  keycloak_cli_redirect_uris   = ["http://127.0.0.1:8765/callback"]

  database_mode             = "external"
  external_database_url     = var.database_url
  external_database_app_url = var.app_database_url
  redis_mode                = "external"
  external_redis_url        = var.redis_url

  gpu_resource_name = "nvidia.com/gpu"
  gpu_node_selector = {
    "nvidia.com/gpu.present" = "true"
  }
  gpu_tolerations = [
    { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" },
  ]

  business_units = {
    payments = { display_name = "Payments", gpu_quota = 8 }
    risk     = { display_name = "Risk", gpu_quota = 4 }
    platform = { display_name = "Platform engineering" }
  }
  shared_instances = { gpu_quota = 8 }

  gateway_autoscaling = {
    min_replicas = 3
    max_replicas = 20
  }

  otlp_endpoint           = "http://otel-collector.observability.svc:4318"
  service_monitor_enabled = true
  prometheus_rule_enabled = true
  helm_timeout_seconds    = 1200

  extra_values = [
    yamlencode({
      platform = { replicaCount = 3, podDisruptionBudget = { enabled = true, minAvailable = 2 } }
      worker   = { replicaCount = 3 }
    }),
  ]
}

output "console_url" {
  description = "Where the console answers."
  value       = module.cove.console_url
}

output "openai_base_url" {
  description = "Base URL to give OpenAI-compatible IDE clients."
  value       = module.cove.openai_base_url
}

output "keycloak_issuer_url" {
  description = "Issuer of the realm Cove trusts."
  value       = module.cove.keycloak_issuer_url
}

output "business_unit_groups" {
  description = "Keycloak groups to put people in, per business unit and role."
  value       = module.cove.business_unit_groups
}
