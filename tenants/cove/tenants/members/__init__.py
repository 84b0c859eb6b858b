"""A business unit's members: who holds which role there, and where each role comes from."""
