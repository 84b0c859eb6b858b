"""Data-plane policies as the control plane manages them (the gateway enforces them)."""
