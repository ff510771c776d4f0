"""Converters from the raw training sources (``../shared/data``) to normalised rows (dev-time only)."""
