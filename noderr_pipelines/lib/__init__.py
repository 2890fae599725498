"""Reusable Dagster machinery; `defs/` holds only instances built with it.

  table_sensor  the one cursor design of sensors that watch a table (a ledger of requested
                candidates that re-asks when a requested run did not act)
  outbox        the outbox relay sensor factory and the relay op's reporting, for every kind
  settings      the base of resources whose empty fields fall back to NODERR_* settings
  policy        project-wide policy (tags, retry policy, owners) applied by definitions.py
"""
