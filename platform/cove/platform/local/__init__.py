"""The local runtime: everything `cove up` starts on one machine, for development and tests."""
