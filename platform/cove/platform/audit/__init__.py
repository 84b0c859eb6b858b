"""Reading the append-only audit log: filters, diffs and CSV export."""
