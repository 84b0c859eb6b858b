# ---------------------------------------------------------------------------------------------
# The cluster
# ---------------------------------------------------------------------------------------------

variable "kubeconfig_path" {
  type        = string
  description = "Path of the kubeconfig file used to reach the cluster Cove is installed into."
  default     = "~/.kube/config"

  validation {
    condition     = length(trimspace(var.kubeconfig_path)) > 0
    error_message = "The kubeconfig_path must not be empty."
  }
}

variable "kube_context" {
  type        = string
  description = "Context of the kubeconfig to use; null uses the file's current context."
  default     = null

  validation {
    condition     = var.kube_context == null || length(trimspace(coalesce(var.kube_context, " "))) > 0
    error_message = "The kube_context must be null or a non-empty context name."
  }
}

# ---------------------------------------------------------------------------------------------
# The release
# ---------------------------------------------------------------------------------------------

variable "namespace" {
  type        = string
  description = "Namespace of the Cove release (gateway, platform API, worker, beat, bundled services)."
  default     = "cove"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "The namespace must be a DNS label: lowercase letters, digits and '-', at most 63 characters."
  }
}

variable "create_namespace" {
  type        = bool
  description = "Create the namespace (true) or install into an existing one (false)."
  default     = true
}

variable "release_name" {
  type        = string
  description = "Name of the Helm release; prefixes the names of Cove's Kubernetes objects."
  default     = "cove"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]*[a-z0-9])?$", var.release_name)) && length(var.release_name) <= 40
    error_message = "The release_name must start with a letter, use lowercase letters, digits and '-', and have at most 40 characters."
  }
}

variable "chart" {
  type = object({
    path       = optional(string)
    repository = optional(string)
    name       = optional(string, "cove")
    version    = optional(string)
  })
  description = <<-EOT
    Where the Helm chart comes from: a local `path` (default: the chart next to this module,
    ../helm/cove), or an internal chart `repository` (https:// or oci://) with an exact `version`.
  EOT
  default     = {}

  validation {
    condition     = !(var.chart.path != null && var.chart.repository != null)
    error_message = "Give either chart.path or chart.repository, not both."
  }

  validation {
    condition     = var.chart.repository == null || can(regex("^(https|oci)://", coalesce(var.chart.repository, "x")))
    error_message = "The chart.repository must start with https:// or oci://."
  }

  validation {
    condition     = var.chart.repository == null || can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+", coalesce(var.chart.version, "x")))
    error_message = "The chart.version must be an exact chart version (e.g. 0.1.0) when chart.repository is set."
  }
}

variable "helm_timeout_seconds" {
  type        = number
  description = "How long Helm waits for the release (including the migrations Job) to become ready."
  default     = 900

  validation {
    condition     = var.helm_timeout_seconds >= 60 && var.helm_timeout_seconds <= 3600 && floor(var.helm_timeout_seconds) == var.helm_timeout_seconds
    error_message = "The helm_timeout_seconds must be a whole number between 60 and 3600."
  }
}

variable "extra_values" {
  type        = list(string)
  description = "Extra values documents (YAML) for the chart, applied after the module's own values; see helm/cove/values.yaml."
  default     = []

  validation {
    condition     = alltrue([for document in var.extra_values : can(yamldecode(document))])
    error_message = "Every extra_values entry must be a YAML document."
  }
}

# ---------------------------------------------------------------------------------------------
# Images (air-gapped installs)
# ---------------------------------------------------------------------------------------------

variable "image_registry" {
  type        = string
  description = "Registry that replaces the registry of every image (Cove, Postgres, Redis, vLLM, trainer, test); null keeps the chart's registries."
  default     = null

  validation {
    condition     = var.image_registry == null || can(regex("^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._-]+)*$", coalesce(var.image_registry, "x")))
    error_message = "The image_registry must be a registry host with an optional port and path, without a scheme (e.g. registry.corp.example.com:5000/mirror)."
  }
}

variable "image_pull_secret_names" {
  type        = list(string)
  description = "Existing docker-registry Secrets in the namespace used to pull the images."
  default     = []

  validation {
    condition     = alltrue([for name in var.image_pull_secret_names : can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", name))])
    error_message = "The image_pull_secret_names must be Kubernetes object names."
  }
}

# ---------------------------------------------------------------------------------------------
# Domain and TLS
# ---------------------------------------------------------------------------------------------

variable "domain" {
  type        = string
  description = "DNS domain under which Cove is published: the console at cove.<domain>, the gateway at cove-api.<domain> (unless the hostnames are given)."

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$", var.domain))
    error_message = "The domain must be a lowercase DNS name with at least two labels, e.g. corp.example.com."
  }
}

variable "console_hostname" {
  type        = string
  description = "Hostname of the console and admin API; null means cove.<domain>."
  default     = null

  validation {
    condition     = var.console_hostname == null || can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$", coalesce(var.console_hostname, "x")))
    error_message = "The console_hostname must be a lowercase DNS name."
  }
}

variable "gateway_hostname" {
  type        = string
  description = "Hostname of the IDE gateway (OpenAI- and Tabby-compatible API); null means cove-api.<domain>."
  default     = null

  validation {
    condition     = var.gateway_hostname == null || can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$", coalesce(var.gateway_hostname, "x")))
    error_message = "The gateway_hostname must be a lowercase DNS name."
  }
}

variable "ingress_class_name" {
  type        = string
  description = "IngressClass of the cluster's ingress controller."
  default     = "nginx"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.ingress_class_name))
    error_message = "The ingress_class_name must be a Kubernetes object name."
  }
}

variable "ingress_controller_namespace" {
  type        = string
  description = "Namespace of the ingress controller, the only one allowed to reach the gateway and the console from outside the release."
  default     = "ingress-nginx"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.ingress_controller_namespace))
    error_message = "The ingress_controller_namespace must be a DNS label."
  }
}

variable "tls_secret_name" {
  type        = string
  description = "Name of the kubernetes.io/tls Secret serving both hostnames. It must exist unless tls_certificate_pem or tls_cluster_issuer is given; null means <release_name>-tls."
  default     = null

  validation {
    condition     = var.tls_secret_name == null || can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", coalesce(var.tls_secret_name, "x")))
    error_message = "The tls_secret_name must be a Kubernetes object name."
  }
}

variable "tls_cluster_issuer" {
  type        = string
  description = "cert-manager ClusterIssuer that issues the certificate (e.g. the company CA); null when the certificate is provided otherwise."
  default     = null

  validation {
    condition     = var.tls_cluster_issuer == null || can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", coalesce(var.tls_cluster_issuer, "x")))
    error_message = "The tls_cluster_issuer must be a Kubernetes object name."
  }
}

variable "tls_certificate_pem" {
  type        = string
  description = "PEM certificate chain for both hostnames; the module stores it with tls_private_key_pem in the TLS Secret."
  default     = null

  validation {
    condition     = var.tls_certificate_pem == null || can(regex("-----BEGIN CERTIFICATE-----", coalesce(var.tls_certificate_pem, "x")))
    error_message = "The tls_certificate_pem must be a PEM certificate."
  }

  validation {
    condition     = (var.tls_certificate_pem == null) == (var.tls_private_key_pem == null)
    error_message = "Give tls_certificate_pem and tls_private_key_pem together."
  }

  validation {
    condition     = var.tls_certificate_pem == null || var.tls_cluster_issuer == null
    error_message = "Give either a certificate (tls_certificate_pem) or a cert-manager issuer (tls_cluster_issuer), not both."
  }
}

variable "tls_private_key_pem" {
  type        = string
  description = "PEM private key of tls_certificate_pem."
  default     = null
  sensitive   = true

  validation {
    condition     = var.tls_private_key_pem == null || can(regex("-----BEGIN ([A-Z]+ )?PRIVATE KEY-----", coalesce(var.tls_private_key_pem, "x")))
    error_message = "The tls_private_key_pem must be a PEM private key."
  }
}

# ---------------------------------------------------------------------------------------------
# Keycloak
# ---------------------------------------------------------------------------------------------

variable "keycloak_url" {
  type        = string
  description = "Base URL of the company's Keycloak, without /realms/... (e.g. https://sso.corp.example.com)."

  validation {
    condition     = can(regex("^https?://[^/\\s]+(/[^\\s]*)?$", var.keycloak_url)) && !endswith(var.keycloak_url, "/")
    error_message = "The keycloak_url must be an http(s) URL without a trailing slash."
  }
}

variable "keycloak_realm" {
  type        = string
  description = "Realm holding Cove's clients and business-unit groups."
  default     = "cove"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]*$", var.keycloak_realm))
    error_message = "The keycloak_realm may contain letters, digits, '_' and '-'."
  }
}

variable "create_keycloak_realm" {
  type        = bool
  description = "Create the realm (true) or add Cove's clients and groups to an existing realm (false)."
  default     = true
}

variable "keycloak_admin_realm" {
  type        = string
  description = "Realm in which the credentials below authenticate (usually master)."
  default     = "master"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]*$", var.keycloak_admin_realm))
    error_message = "The keycloak_admin_realm may contain letters, digits, '_' and '-'."
  }
}

variable "keycloak_admin_client_id" {
  type        = string
  description = "Client the Keycloak provider authenticates with: a confidential client with a service account (client credentials), or admin-cli with a username and password."
  default     = "admin-cli"

  validation {
    condition     = length(var.keycloak_admin_client_id) > 0
    error_message = "The keycloak_admin_client_id must not be empty."
  }
}

variable "keycloak_admin_client_secret" {
  type        = string
  description = "Secret of keycloak_admin_client_id (client credentials grant); null when a username and password are used."
  default     = null
  sensitive   = true

  validation {
    condition     = (var.keycloak_admin_client_secret != null) != (var.keycloak_admin_username != null && var.keycloak_admin_password != null)
    error_message = "Give either keycloak_admin_client_secret, or keycloak_admin_username with keycloak_admin_password."
  }
}

variable "keycloak_admin_username" {
  type        = string
  description = "Keycloak administrator login (password grant); null with client credentials."
  default     = null

  validation {
    condition     = var.keycloak_admin_username == null || length(trimspace(coalesce(var.keycloak_admin_username, " "))) > 0
    error_message = "The keycloak_admin_username must be null or a non-empty login."
  }
}

variable "keycloak_admin_password" {
  type        = string
  description = "Password of keycloak_admin_username."
  default     = null
  sensitive   = true

  validation {
    condition     = var.keycloak_admin_password == null || length(coalesce(var.keycloak_admin_password, " ")) >= 8
    error_message = "The keycloak_admin_password must be null or at least 8 characters."
  }
}

variable "keycloak_cli_redirect_uris" {
  type        = list(string)
  description = "Extra redirect URIs of the cove-cli client (it uses the device flow; loopback URIs allow a browser login too)."
  default     = []

  validation {
    condition     = alltrue([for uri in var.keycloak_cli_redirect_uris : can(regex("^https?://", uri))])
    error_message = "The keycloak_cli_redirect_uris must be http(s) URIs."
  }
}

# ---------------------------------------------------------------------------------------------
# Postgres and Redis
# ---------------------------------------------------------------------------------------------

variable "database_mode" {
  type        = string
  description = "\"bundled\": a single Postgres pod in the release (evaluation, small installs); \"external\": the company's Postgres at external_database_url (production)."
  default     = "external"

  validation {
    condition     = contains(["bundled", "external"], var.database_mode)
    error_message = "The database_mode must be \"bundled\" or \"external\"."
  }
}

variable "external_database_url" {
  type        = string
  description = "Connection URL of the external Postgres (postgresql://owner:password@host:5432/cove?sslmode=verify-full); its login owns the schema and runs the migrations."
  default     = null
  sensitive   = true

  validation {
    condition     = var.database_mode == "bundled" || can(regex("^postgres(ql)?://.+", coalesce(var.external_database_url, "x")))
    error_message = "The external_database_url must be a postgresql:// URL when database_mode is \"external\"."
  }
}

variable "external_database_app_url" {
  type        = string
  description = "Optional login of the non-owner application role cove_app (COVE_APP_DATABASE_URL); null means Cove switches to that role on the owner's connection."
  default     = null
  sensitive   = true

  validation {
    condition     = var.external_database_app_url == null || can(regex("^postgres(ql)?://.+", coalesce(var.external_database_app_url, "x")))
    error_message = "The external_database_app_url must be a postgresql:// URL."
  }
}

variable "bundled_database_storage" {
  type        = string
  description = "Size of the bundled Postgres volume (database_mode = \"bundled\")."
  default     = "20Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi|Ti)$", var.bundled_database_storage))
    error_message = "The bundled_database_storage must be a size such as 20Gi."
  }
}

variable "redis_mode" {
  type        = string
  description = "\"bundled\": a Redis pod in the release; \"external\": the company's Redis at external_redis_url."
  default     = "bundled"

  validation {
    condition     = contains(["bundled", "external"], var.redis_mode)
    error_message = "The redis_mode must be \"bundled\" or \"external\"."
  }
}

variable "external_redis_url" {
  type        = string
  description = "URL of the external Redis (redis://:password@host:6379/0 or rediss://...)."
  default     = null
  sensitive   = true

  validation {
    condition     = var.redis_mode == "bundled" || can(regex("^rediss?://.+", coalesce(var.external_redis_url, "x")))
    error_message = "The external_redis_url must be a redis:// or rediss:// URL when redis_mode is \"external\"."
  }
}

# ---------------------------------------------------------------------------------------------
# GPUs and business units
# ---------------------------------------------------------------------------------------------

variable "gpu_node_selector" {
  type        = map(string)
  description = "Node labels that select GPU nodes for model instances and training Jobs (e.g. {\"nvidia.com/gpu.present\" = \"true\"})."
  default     = {}

  validation {
    condition = alltrue([
      for key, value in var.gpu_node_selector :
      can(regex("^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", key))
      && can(regex("^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", value)) && length(value) <= 63
    ])
    error_message = "The gpu_node_selector must map label keys to label values (at most 63 characters)."
  }
}

variable "gpu_tolerations" {
  type = list(object({
    key      = optional(string)
    operator = optional(string, "Equal")
    value    = optional(string)
    effect   = optional(string)
  }))
  description = "Tolerations for the taints of the GPU nodes."
  default     = []

  validation {
    condition     = alltrue([for t in var.gpu_tolerations : contains(["Equal", "Exists"], t.operator)])
    error_message = "Each gpu_tolerations operator must be \"Equal\" or \"Exists\"."
  }

  validation {
    condition     = alltrue([for t in var.gpu_tolerations : t.effect == null || contains(["NoSchedule", "PreferNoSchedule", "NoExecute"], coalesce(t.effect, "x"))])
    error_message = "Each gpu_tolerations effect must be NoSchedule, PreferNoSchedule or NoExecute."
  }

  validation {
    condition     = alltrue([for t in var.gpu_tolerations : !(t.operator == "Exists" && t.value != null)])
    error_message = "A gpu_tolerations entry with operator \"Exists\" takes no value."
  }
}

variable "gpu_resource_name" {
  type        = string
  description = "Extended resource name of the GPUs, used in quotas and requests."
  default     = "nvidia.com/gpu"

  validation {
    condition     = can(regex("^[a-z0-9.-]+/[a-z0-9.-]+$", var.gpu_resource_name))
    error_message = "The gpu_resource_name must look like vendor.com/gpu."
  }
}

variable "business_units" {
  type = map(object({
    display_name = optional(string)
    gpu_quota    = optional(number)
  }))
  description = "Business units keyed by their slug in Cove (e.g. payments): each gets a namespace (cove-bu-<id>) capped at gpu_quota GPUs and the Keycloak groups /cove/<id>/admins, developers and viewers."
  default     = {}

  validation {
    condition     = alltrue([for id, _ in var.business_units : can(regex("^[a-z][a-z0-9-]*[a-z0-9]$", id)) && length(id) <= 55])
    error_message = "The business_units keys must be Cove slugs: 2 to 55 lowercase letters, digits and '-', starting with a letter."
  }

  validation {
    condition     = alltrue([for bu in values(var.business_units) : bu.gpu_quota == null || (coalesce(bu.gpu_quota, 0) >= 0 && floor(coalesce(bu.gpu_quota, 0)) == coalesce(bu.gpu_quota, 0))])
    error_message = "Each business_units gpu_quota must be a whole number of GPUs, 0 or more."
  }
}

variable "shared_instances" {
  type = object({
    enabled   = optional(bool, true)
    gpu_quota = optional(number)
  })
  description = "Base instances a platform admin shares across business units run in the namespace cove-shared; enabled creates it with the reconciler's rights, gpu_quota caps its GPUs (null: no ceiling)."
  default     = {}

  validation {
    condition     = var.shared_instances.gpu_quota == null || (coalesce(var.shared_instances.gpu_quota, 0) >= 0 && floor(coalesce(var.shared_instances.gpu_quota, 0)) == coalesce(var.shared_instances.gpu_quota, 0))
    error_message = "The shared_instances gpu_quota must be a whole number of GPUs, 0 or more."
  }
}

# ---------------------------------------------------------------------------------------------
# Scale and observability
# ---------------------------------------------------------------------------------------------

variable "gateway_autoscaling" {
  type = object({
    min_replicas = number
    max_replicas = number
  })
  description = "Replica range of the gateway's HorizontalPodAutoscaler (CPU based)."
  default = {
    min_replicas = 2
    max_replicas = 10
  }

  validation {
    condition     = var.gateway_autoscaling.min_replicas >= 1 && var.gateway_autoscaling.min_replicas <= var.gateway_autoscaling.max_replicas
    error_message = "The gateway_autoscaling replicas must satisfy 1 <= min_replicas <= max_replicas."
  }
}

variable "otlp_endpoint" {
  type        = string
  description = "OpenTelemetry collector (OTLP/HTTP) receiving Cove's traces, e.g. http://otel-collector.observability:4318; null disables export."
  default     = null

  validation {
    condition     = var.otlp_endpoint == null || can(regex("^https?://[^\\s]+$", coalesce(var.otlp_endpoint, "x")))
    error_message = "The otlp_endpoint must be an http(s) URL."
  }
}

variable "service_monitor_enabled" {
  type        = bool
  description = "Create a Prometheus Operator ServiceMonitor for the gateway (needs the operator's CRDs)."
  default     = false
}

variable "prometheus_rule_enabled" {
  type        = bool
  description = "Create the PrometheusRule with the gateway alerts of docs/operations.md (needs the operator's CRDs and the ServiceMonitor)."
  default     = false
}
