# Installs Cove into an existing Kubernetes cluster: the namespace, the Secrets the chart reads,
# the Keycloak realm with Cove's clients and business-unit groups, and the Helm release.

provider "kubernetes" {
  config_path    = pathexpand(var.kubeconfig_path)
  config_context = var.kube_context
}

provider "helm" {
  kubernetes = {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context
  }
}

provider "keycloak" {
  url           = var.keycloak_url
  realm         = var.keycloak_admin_realm
  client_id     = var.keycloak_admin_client_id
  client_secret = var.keycloak_admin_client_secret
  username      = var.keycloak_admin_username
  password      = var.keycloak_admin_password
}

locals {
  console_hostname = coalesce(var.console_hostname, "cove.${var.domain}")
  gateway_hostname = coalesce(var.gateway_hostname, "cove-api.${var.domain}")
  console_url      = "https://${local.console_hostname}"
  gateway_url      = "https://${local.gateway_hostname}"

  namespace = var.create_namespace ? kubernetes_namespace_v1.cove[0].metadata[0].name : var.namespace

  realm_id   = var.create_keycloak_realm ? keycloak_realm.cove[0].id : data.keycloak_realm.existing[0].id
  realm_name = var.create_keycloak_realm ? keycloak_realm.cove[0].realm : data.keycloak_realm.existing[0].realm
  issuer_url = "${var.keycloak_url}/realms/${local.realm_name}"

  console_client_id  = "cove-console"
  cli_client_id      = "cove-cli"
  gateway_client_id  = "cove-gateway"
  platform_client_id = "cove-platform"

  app_secret_name  = "${var.release_name}-app-secrets"
  oidc_secret_name = "${var.release_name}-oidc"
  tls_secret_name  = coalesce(var.tls_secret_name, "${var.release_name}-tls")

  # The chart and the reconciler both name a business unit's namespace cove-bu-<id>.
  bu_namespace_prefix = "cove-bu-"
  bu_roles            = ["admins", "developers", "viewers"]
  bu_role_groups = {
    for pair in setproduct(keys(var.business_units), local.bu_roles) :
    "${pair[0]}/${pair[1]}" => { bu = pair[0], role = pair[1] }
  }

  chart_path = coalesce(var.chart.path, "${path.module}/../helm/cove")

  # The chart's values: everything secret is passed by Secret name, never by value.
  chart_values = {
    global = {
      imageRegistry    = var.image_registry == null ? "" : var.image_registry
      imagePullSecrets = var.image_pull_secret_names
    }
    secretKey = {
      existingSecret    = local.app_secret_name
      existingSecretKey = "secret-key"
    }
    gateway = {
      autoscaling = {
        enabled                        = true
        minReplicas                    = var.gateway_autoscaling.min_replicas
        maxReplicas                    = var.gateway_autoscaling.max_replicas
        targetCPUUtilizationPercentage = 70
      }
    }
    postgresql = {
      enabled = var.database_mode == "bundled"
      auth = {
        existingSecret    = var.database_mode == "bundled" ? local.app_secret_name : ""
        existingSecretKey = "postgres-password"
      }
      persistence = {
        size = var.bundled_database_storage
      }
    }
    externalDatabase = {
      existingSecret = var.database_mode == "external" ? local.app_secret_name : ""
      urlKey         = "database-url"
      appUrlKey      = "app-database-url"
    }
    redis = {
      enabled = var.redis_mode == "bundled"
      auth = {
        existingSecret    = var.redis_mode == "bundled" ? local.app_secret_name : ""
        existingSecretKey = "redis-password"
      }
    }
    externalRedis = {
      existingSecret = var.redis_mode == "external" ? local.app_secret_name : ""
      urlKey         = "redis-url"
    }
    oidc = {
      enabled         = true
      issuerUrl       = local.issuer_url
      audience        = local.gateway_client_id
      clientId        = local.gateway_client_id
      consoleClientId = local.console_client_id
      cliClientId     = local.cli_client_id
      existingSecret  = local.oidc_secret_name
      clientSecretKey = "client-secret"
      members = {
        enabled         = true
        clientId        = local.platform_client_id
        clientSecretKey = "platform-client-secret"
      }
    }
    ingress = {
      enabled   = true
      className = var.ingress_class_name
      annotations = var.tls_cluster_issuer == null ? {} : {
        "cert-manager.io/cluster-issuer" = var.tls_cluster_issuer
      }
      console = { host = local.console_hostname }
      gateway = { host = local.gateway_hostname }
      tls = {
        enabled    = true
        secretName = local.tls_secret_name
      }
    }
    networkPolicy = {
      ingressController = {
        namespaceSelector = {
          matchLabels = { "kubernetes.io/metadata.name" = var.ingress_controller_namespace }
        }
      }
    }
    metrics = {
      serviceMonitor = { enabled = var.service_monitor_enabled }
      prometheusRule = { enabled = var.prometheus_rule_enabled }
    }
    otel = {
      endpoint = var.otlp_endpoint == null ? "" : var.otlp_endpoint
    }
    modelServing = {
      gpuResourceName = var.gpu_resource_name
      nodeSelector    = var.gpu_node_selector
      tolerations = [
        for t in var.gpu_tolerations : { for k, v in t : k => v if v != null }
      ]
      sharedInstances = {
        enabled  = var.shared_instances.enabled
        gpuQuota = var.shared_instances.gpu_quota
      }
    }
    tenancy = {
      # A null gpuQuota removes the key in Helm: no GPU ceiling for that business unit.
      businessUnits = [
        for id in sort(keys(var.business_units)) : {
          name     = id
          gpuQuota = var.business_units[id].gpu_quota
        }
      ]
    }
  }
}

# ---------------------------------------------------------------------------------------------
# Namespace and Secrets
# ---------------------------------------------------------------------------------------------

resource "kubernetes_namespace_v1" "cove" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of"          = "cove"
      "pod-security.kubernetes.io/enforce" = "restricted"
    }
  }
}

resource "random_password" "secret_key" {
  length  = 48
  special = false
}

resource "random_password" "postgres" {
  count   = var.database_mode == "bundled" ? 1 : 0
  length  = 32
  special = false
}

resource "random_password" "redis" {
  count   = var.redis_mode == "bundled" ? 1 : 0
  length  = 32
  special = false
}

# Everything the chart reads by Secret name. Generated values stay in the Terraform state:
# keep the state in an encrypted, access-controlled backend.
resource "kubernetes_secret_v1" "app" {
  metadata {
    name      = local.app_secret_name
    namespace = local.namespace
    labels = {
      "app.kubernetes.io/part-of"    = "cove"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  type = "Opaque"

  data = merge(
    { "secret-key" = random_password.secret_key.result },
    var.database_mode == "bundled" ? { "postgres-password" = random_password.postgres[0].result } : {},
    var.database_mode == "external" ? { "database-url" = var.external_database_url } : {},
    var.database_mode == "external" && var.external_database_app_url != null ? { "app-database-url" = var.external_database_app_url } : {},
    var.redis_mode == "bundled" ? { "redis-password" = random_password.redis[0].result } : {},
    var.redis_mode == "external" ? { "redis-url" = var.external_redis_url } : {},
  )
}

resource "kubernetes_secret_v1" "oidc" {
  metadata {
    name      = local.oidc_secret_name
    namespace = local.namespace
    labels = {
      "app.kubernetes.io/part-of"    = "cove"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  type = "Opaque"

  data = {
    "client-secret"          = keycloak_openid_client.gateway.client_secret
    "platform-client-secret" = keycloak_openid_client.platform.client_secret
  }
}

resource "kubernetes_secret_v1" "tls" {
  count = var.tls_certificate_pem != null ? 1 : 0

  metadata {
    name      = local.tls_secret_name
    namespace = local.namespace
    labels = {
      "app.kubernetes.io/part-of"    = "cove"
      "app.kubernetes.io/managed-by" = "terraform"
    }
  }

  type = "kubernetes.io/tls"

  data = {
    "tls.crt" = var.tls_certificate_pem
    "tls.key" = var.tls_private_key_pem
  }
}

# ---------------------------------------------------------------------------------------------
# Keycloak: realm, clients, business-unit groups
# ---------------------------------------------------------------------------------------------

resource "keycloak_realm" "cove" {
  count = var.create_keycloak_realm ? 1 : 0

  realm        = var.keycloak_realm
  enabled      = true
  display_name = "Cove"

  ssl_required = "external"
}

data "keycloak_realm" "existing" {
  count = var.create_keycloak_realm ? 0 : 1

  realm = var.keycloak_realm
}

# The console: a browser SPA, so a public client with the authorization code flow and PKCE.
resource "keycloak_openid_client" "console" {
  realm_id  = local.realm_id
  client_id = local.console_client_id
  name      = "Cove console"
  enabled   = true

  access_type                  = "PUBLIC"
  standard_flow_enabled        = true
  implicit_flow_enabled        = false
  direct_access_grants_enabled = false
  pkce_code_challenge_method   = "S256"

  root_url                        = local.console_url
  base_url                        = "/"
  valid_redirect_uris             = ["${local.console_url}/*"]
  valid_post_logout_redirect_uris = ["${local.console_url}/*"]
  web_origins                     = [local.console_url]
}

# The CLI and IDE helpers: the device authorization grant (no browser on the device needed).
resource "keycloak_openid_client" "cli" {
  realm_id  = local.realm_id
  client_id = local.cli_client_id
  name      = "Cove CLI"
  enabled   = true

  access_type                               = "PUBLIC"
  standard_flow_enabled                     = length(var.keycloak_cli_redirect_uris) > 0
  implicit_flow_enabled                     = false
  direct_access_grants_enabled              = false
  oauth2_device_authorization_grant_enabled = true
  # Keycloak applies a client's PKCE requirement to the device flow as well; require it only
  # when the browser flow (loopback redirect) is enabled.
  pkce_code_challenge_method = length(var.keycloak_cli_redirect_uris) > 0 ? "S256" : ""
  valid_redirect_uris        = var.keycloak_cli_redirect_uris
}

# The gateway's audience: access tokens of the console and the CLI carry "cove-gateway" in
# `aud`, and the gateway accepts no other. Confidential, without login flows of its own.
resource "keycloak_openid_client" "gateway" {
  realm_id  = local.realm_id
  client_id = local.gateway_client_id
  name      = "Cove gateway"
  enabled   = true

  access_type                  = "CONFIDENTIAL"
  standard_flow_enabled        = false
  implicit_flow_enabled        = false
  direct_access_grants_enabled = false
  service_accounts_enabled     = false
}

# The platform reads each business unit's members (the /cove/<bu>/... groups) through the Admin
# REST API as this client's service account: read-only realm-management roles, nothing else.
resource "keycloak_openid_client" "platform" {
  realm_id  = local.realm_id
  client_id = local.platform_client_id
  name      = "Cove platform (members list)"
  enabled   = true

  access_type                  = "CONFIDENTIAL"
  standard_flow_enabled        = false
  implicit_flow_enabled        = false
  direct_access_grants_enabled = false
  service_accounts_enabled     = true
}

data "keycloak_openid_client" "realm_management" {
  realm_id  = local.realm_id
  client_id = "realm-management"
}

resource "keycloak_openid_client_service_account_role" "platform" {
  for_each = toset(["query-groups", "view-users"])

  realm_id                = local.realm_id
  service_account_user_id = keycloak_openid_client.platform.service_account_user_id
  client_id               = data.keycloak_openid_client.realm_management.id
  role                    = each.value
}

resource "keycloak_openid_audience_protocol_mapper" "gateway_audience" {
  for_each = {
    console = keycloak_openid_client.console.id
    cli     = keycloak_openid_client.cli.id
  }

  realm_id  = local.realm_id
  client_id = each.value
  name      = "cove-gateway-audience"

  included_client_audience = keycloak_openid_client.gateway.client_id
  add_to_id_token          = false
  add_to_access_token      = true
}

# Group paths (/cove/<bu>/<role>) in the `groups` claim: Cove maps them to BU memberships and roles.
resource "keycloak_openid_group_membership_protocol_mapper" "groups" {
  for_each = {
    console = keycloak_openid_client.console.id
    cli     = keycloak_openid_client.cli.id
  }

  realm_id  = local.realm_id
  client_id = each.value
  name      = "cove-groups"

  claim_name          = "groups"
  full_path           = true
  add_to_id_token     = true
  add_to_access_token = true
  add_to_userinfo     = true
}

resource "keycloak_group" "cove" {
  realm_id = local.realm_id
  name     = "cove"
}

resource "keycloak_group" "platform_admins" {
  realm_id  = local.realm_id
  parent_id = keycloak_group.cove.id
  name      = "platform-admins"
}

resource "keycloak_group" "business_unit" {
  for_each = var.business_units

  realm_id  = local.realm_id
  parent_id = keycloak_group.cove.id
  name      = each.key
  attributes = {
    display_name = coalesce(each.value.display_name, each.key)
  }
}

resource "keycloak_group" "business_unit_role" {
  for_each = local.bu_role_groups

  realm_id  = local.realm_id
  parent_id = keycloak_group.business_unit[each.value.bu].id
  name      = each.value.role
}

# ---------------------------------------------------------------------------------------------
# The Helm release
# ---------------------------------------------------------------------------------------------

resource "helm_release" "cove" {
  name       = var.release_name
  namespace  = local.namespace
  repository = var.chart.repository
  chart      = var.chart.repository == null ? local.chart_path : var.chart.name
  version    = var.chart.version

  values = concat([yamlencode(local.chart_values)], var.extra_values)

  create_namespace = false
  wait             = true
  timeout          = var.helm_timeout_seconds
  max_history      = 10

  depends_on = [
    kubernetes_secret_v1.app,
    kubernetes_secret_v1.oidc,
    kubernetes_secret_v1.tls,
  ]
}
