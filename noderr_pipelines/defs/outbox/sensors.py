"""Outbox sensors (read-only): one per kind, both built by the same factory."""

from noderr_core.tables import OutboxKind
from noderr_pipelines.defs.outbox.jobs import chain_relay_job, relay_emails_job
from noderr_pipelines.lib.outbox import outbox_relay_sensor

email_relay_sensor = outbox_relay_sensor(
    OutboxKind.EMAIL, relay_emails_job, name="email_relay_sensor", run_key_prefix="email-relay",
    minimum_interval_seconds=10, description="Due email outbox rows → relay_emails_job.",
)

chain_outbox_sensor = outbox_relay_sensor(
    OutboxKind.CHAIN, chain_relay_job, name="chain_outbox_sensor", run_key_prefix="chain-relay",
    minimum_interval_seconds=15,
    description="Due chain outbox rows (node registrations, reward roots) → chain_relay_job.",
)
