terraform {
  # 1.9: input validations may refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.31.0, < 3.0.0"
    }
    helm = {
      # 3.x: the `kubernetes` provider setting and `set` are attributes, not blocks.
      source  = "hashicorp/helm"
      version = ">= 3.0.0, < 4.0.0"
    }
    # keycloak/keycloak is the provider maintained by the Keycloak project itself; it continues
    # mrparkers/keycloak (archived, no longer released) with the same resource names.
    keycloak = {
      source  = "keycloak/keycloak"
      version = ">= 5.6.0, < 6.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }
}
