"""Cove's control plane and, in `cove.platform.core`, the foundation every service shares."""
