"""The control-plane HTTP API: composition root of every admin endpoint."""
