"""`cove login`: a developer signs in from a terminal or an IDE with the OAuth 2.0 device
authorization grant (RFC 8628) at the realm's OIDC provider (Keycloak in production)."""
