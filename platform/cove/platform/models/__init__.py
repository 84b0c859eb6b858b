"""The model catalog: base models and adapters."""
