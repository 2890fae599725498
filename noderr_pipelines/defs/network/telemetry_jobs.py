"""Heartbeat rollup and retention: fold raw heartbeats into 5-minute slots, then prune old raw rows.

Idempotent: the rollup recomputes whole slots (delete-then-insert per slot range) from the last
rolled-up slot, one slot back for heartbeats that committed late, up to the start of the current
slot; pruning deletes only raw rows older than NODERR_HEARTBEAT_RAW_RETENTION_HOURS *and* already
rolled up. Running it twice, or after a pause, gives the same tables.
"""

from datetime import timedelta

import dagster as dg

from noderr_core.settings import get_settings
from noderr_core.telemetry import SLOT_SECONDS, prune_heartbeats, rollup_heartbeats, rollup_watermark
from noderr_core.timeutil import utcnow
from noderr_pipelines.resources import DatabaseResource


@dg.op(retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL))
def roll_up_and_prune_heartbeats(context: dg.OpExecutionContext, database: DatabaseResource) -> dg.Output[dict]:
    settings = get_settings()
    retention = timedelta(hours=settings.heartbeat_raw_retention_hours)
    now = utcnow()
    with database.session() as session:
        watermark = rollup_watermark(session)
        # First run: everything still kept raw. Later: the last slot again (late commits) onward.
        start = (now - retention) if watermark is None else watermark - timedelta(seconds=SLOT_SECONDS)
        rolled = rollup_heartbeats(session, start=start, end=now)
    with database.session() as session:
        pruned = prune_heartbeats(session, retention=retention, now=now)
    summary = {"slots_written": rolled.slots_written, "heartbeats_rolled_up": rolled.raw_rows,
               "raw_rows_pruned": pruned, "rolled_up_to": rolled.end.isoformat()}
    context.log.info(f"heartbeat rollup: {summary}")
    return dg.Output(summary, metadata={k: v for k, v in summary.items()})


@dg.job(tags={"noderr/domain": "network"})
def heartbeat_rollup_job() -> None:
    """Heartbeats per node per 5-minute slot (read by rewards and dashboards); raw rows pruned."""
    roll_up_and_prune_heartbeats()


heartbeat_rollup_schedule = dg.ScheduleDefinition(
    job=heartbeat_rollup_job,
    cron_schedule="1-59/5 * * * *",  # a minute after each slot closes
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
