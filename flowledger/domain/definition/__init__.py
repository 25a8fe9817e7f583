"""Workflow definitions: loading, normalising and checking both formats."""
