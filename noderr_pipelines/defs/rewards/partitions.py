"""Reward epochs are UTC days.

`end_offset=1` makes today a partition too: closing the open day early (test networks, the demo)
materializes today's partition, so the Dagster UI shows what was actually computed and paid.
"""

import dagster as dg

# The first day the network paid rewards; earlier partitions would be empty epochs.
reward_epoch_partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01", end_offset=1)
