"""Identity shared by the gateway and the platform API: OIDC access tokens and their claims.

`oidc.TokenVerifier` checks Keycloak-issued access tokens locally against cached JWKS;
`claims` turns verified claims into a `Principal` for one business unit; `keycloak` provisions
the realm (it needs python-keycloak, so nothing here imports it eagerly).
"""
