"""Noderr domain core: schema, state machines, queue, rewards math, storage, email, chain.

Imports neither FastAPI nor Dagster; ``api/`` and ``noderr_pipelines/`` are thin adapters over it.
"""
