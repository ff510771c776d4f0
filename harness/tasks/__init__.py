"""Eval tasks: specs, packaged data, and adapters that turn rows into typed Examples."""
