"""Configuration: the parameter registry, building, validating and hashing config.json."""
