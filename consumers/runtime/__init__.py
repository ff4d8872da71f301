"""The reusable consumer runtime: decode, validate, version-gate, apply in a transaction, commit, dead-letter."""
