"""The foundation: settings, Postgres access, migrations, errors, logging and telemetry.

This package imports no other Cove code (an import-linter contract enforces it), so every
service — the gateway included — can depend on it without pulling in the control plane.
"""
