"""Outbox relay jobs, one per kind: each runs the one relay loop with its kind's handler.

Both are idempotent through the outbox (leases, idempotency keys, on-chain checks), so Dagster
retries and re-executions never send an email or a transaction twice.
"""

import dagster as dg

from noderr_core.chain.relay import ChainHandler
from noderr_core.db import make_session_factory
from noderr_core.email.relay import EmailHandler
from noderr_core.outbox import relay_due
from noderr_pipelines.defs.onboarding.resources import OnboardingSettings
from noderr_pipelines.lib.outbox import report_relay
from noderr_pipelines.resources import ChainResource, DatabaseResource


@dg.op
def relay_emails_op(context: dg.OpExecutionContext, database: DatabaseResource,
                    onboarding_settings: OnboardingSettings) -> dict:
    """Send due emails once each; failures are recorded and retried later with backoff."""
    report = relay_due(make_session_factory(database.get_engine()),
                       EmailHandler(onboarding_settings.settings()),
                       limit=onboarding_settings.relay_batch_size)
    return report_relay(context, report)


@dg.op(description="Send due chain outbox rows (register/deregister nodes, publish roots).")
def relay_chain_outbox(context: dg.OpExecutionContext, database: DatabaseResource,
                       chain: ChainResource) -> dict:
    try:
        client = chain.client()
    except Exception as exc:  # e.g. no addresses file: rows stay queued and are retried
        context.log.warning(f"chain client unavailable: {exc}")
        client = None
    report = relay_due(make_session_factory(database.get_engine()),
                       ChainHandler(chain.settings(), client=client))
    summary = report_relay(context, report)
    if report.failed:
        failed = [e for e in report.messages if e["status"] == "failed"]
        raise dg.Failure(
            description=f"{len(report.failed)} chain transaction(s) failed permanently: "
            + "; ".join(f"{e['key']}: {e['error']}" for e in failed),
            metadata={"failed": len(report.failed), "sent": len(report.sent)},
            allow_retries=False,  # the failed rows are final; a retry would find nothing due
        )
    return summary


@dg.job
def relay_emails_job():
    relay_emails_op()


@dg.job(description="Relay the chain outbox once (launched by chain_outbox_sensor).")
def chain_relay_job():
    relay_chain_outbox()
