"""Tabby's real IDE agent (npm `tabby-agent`) and a small LSP client to drive it."""
