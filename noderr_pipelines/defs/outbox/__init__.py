"""Outbox domain: relaying side effects (emails, chain transactions), one job and sensor per kind."""

import dagster as dg

from noderr_pipelines.defs.outbox.jobs import chain_relay_job, relay_emails_job
from noderr_pipelines.defs.outbox.sensors import chain_outbox_sensor, email_relay_sensor

defs = dg.Definitions(
    jobs=[relay_emails_job, chain_relay_job],
    sensors=[email_relay_sensor, chain_outbox_sensor],
)
