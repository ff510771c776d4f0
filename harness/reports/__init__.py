"""Reports built only from result files (never from models or data)."""
