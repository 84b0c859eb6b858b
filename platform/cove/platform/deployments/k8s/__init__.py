"""A deployment spec rendered into the Kubernetes objects the reconciler server-side-applies.

`spec` and `render` are pure (no cluster, no `kubernetes` import) so the API, the CLI and the
tests share them; `client` is the only module that talks to an API server.
"""
