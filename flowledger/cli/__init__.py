"""Command-line adapter over the public API."""
