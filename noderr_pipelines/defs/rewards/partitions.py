"""Reward epochs are UTC days."""

import dagster as dg

# The first day the network paid rewards; earlier partitions would be empty epochs.
reward_epoch_partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")
