"""The tenancy kernel: business units, users and roles, API keys, principals, audit."""
