"""Secret detection and content exclusion for everything that passes through the gateway.

`secrets` finds credentials in text (pure functions, no I/O); `engine` applies a tenant's
`Policy` to a text and its file path (redact, block or audit each finding, exclude paths);
`cli` is the offline `cove policy scan` dry run. Nothing here touches the network or a
database, so the same code runs on the hot path, in workers and on an admin's laptop.
"""
