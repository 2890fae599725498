"""Dagster code location for the Noderr platform (loaded through workspace.yaml)."""
