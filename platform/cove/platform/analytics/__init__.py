"""Usage analytics: rollups of the gateway's usage events, the metrics API (definitions v1 in
METRICS.md), model-version comparison, CSV and Copilot-compatible exports, retention."""
