"""Reusable Dagster machinery (factories, resources, IO managers); `defs/` holds the instances."""
