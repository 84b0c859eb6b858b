output "console_url" {
  description = "URL of the web console and the platform's admin API."
  value       = local.console_url
}

output "gateway_url" {
  description = "URL of the IDE gateway (Tabby plugins use it as is)."
  value       = local.gateway_url
}

output "openai_base_url" {
  description = "Base URL for OpenAI-compatible clients (SDKs, Continue, JetBrains custom endpoints)."
  value       = "${local.gateway_url}/v1"
}

output "keycloak_issuer_url" {
  description = "OIDC issuer of Cove's realm."
  value       = local.issuer_url
}

output "keycloak_realm" {
  description = "Name of the Keycloak realm holding Cove's clients and groups."
  value       = local.realm_name
}

output "console_client_id" {
  description = "Public OIDC client of the console (authorization code + PKCE)."
  value       = keycloak_openid_client.console.client_id
}

output "cli_client_id" {
  description = "Public OIDC client of the CLI and IDE helpers (device authorization grant)."
  value       = keycloak_openid_client.cli.client_id
}

output "gateway_client_id" {
  description = "Client id of the gateway, the audience its access tokens must carry."
  value       = keycloak_openid_client.gateway.client_id
}

output "namespace" {
  description = "Namespace of the release."
  value       = local.namespace
}

output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.cove.name
}

output "business_unit_namespaces" {
  description = "Namespace of each business unit (model instances and training Jobs)."
  value       = { for id, _ in var.business_units : id => "${local.bu_namespace_prefix}${id}" }
}

output "business_unit_groups" {
  description = "Keycloak group paths of each business unit, by role (admins, developers, viewers)."
  value = {
    for id, _ in var.business_units : id => {
      for role in local.bu_roles : role => "/cove/${id}/${role}"
    }
  }
}

output "platform_admins_group" {
  description = "Keycloak group whose members are Cove platform admins."
  value       = "/cove/platform-admins"
}

output "app_secret_name" {
  description = "Secret holding Cove's secret key and database/Redis credentials (back it up: the secret key peppers every API key)."
  value       = kubernetes_secret_v1.app.metadata[0].name
}

output "platform_client_id" {
  description = "Confidential client whose service account reads business units' members (Keycloak Admin API, read-only)."
  value       = keycloak_openid_client.platform.client_id
}
