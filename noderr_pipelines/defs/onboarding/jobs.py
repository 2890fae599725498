"""Onboarding jobs: screen one application, carry out one decision, relay due emails.

Each job is idempotent through its core function (status checks under a row lock, outbox
idempotency keys), so Dagster retries and manual re-executions are safe.
"""


import dagster as dg

from noderr_core.audit import Actor
from noderr_core.db import make_session_factory
from noderr_core.email.relay import relay_due_emails
from noderr_core.onboarding.provisioning import carry_out_decision
from noderr_core.onboarding.screening import screen_application
from noderr_pipelines.defs.onboarding.resources import OnboardingSettings
from noderr_pipelines.resources import DatabaseResource

_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


class ApplicationConfig(dg.Config):
    application_id: int


@dg.op(retry_policy=_RETRY)
def screen_application_op(context: dg.OpExecutionContext, config: ApplicationConfig,
                          database: DatabaseResource) -> dict:
    """Run the screening checks; pending_review with notes, or rejected for hard failures."""
    with database.session() as session:
        result = screen_application(session, config.application_id, Actor.pipeline(context.run_id, "screening"))
    context.add_output_metadata({"status": str(result.status), "screened": result.screened,
                                 "notes": len(result.notes)})
    return {"application_id": result.application_id, "status": str(result.status)}


@dg.op(retry_policy=_RETRY)
def carry_out_decision_op(context: dg.OpExecutionContext, config: ApplicationConfig,
                          database: DatabaseResource, onboarding_settings: OnboardingSettings) -> dict:
    """Provision an approved application or queue the rejection email (one transaction)."""
    with database.session() as session:
        outcome = carry_out_decision(session, application_id=config.application_id,
                                     settings=onboarding_settings.settings(),
                                     actor=Actor.pipeline(context.run_id, "provisioning"))
    context.add_output_metadata({"action": outcome.action, "node_id": outcome.node_id or ""})
    return {"application_id": outcome.application_id, "action": outcome.action, "node_id": outcome.node_id}


@dg.op
def relay_emails_op(context: dg.OpExecutionContext, database: DatabaseResource,
                    onboarding_settings: OnboardingSettings) -> dict:
    """Send due emails once each; failures are recorded and retried later with backoff."""
    report = relay_due_emails(make_session_factory(database.get_engine()), onboarding_settings.settings(),
                              limit=onboarding_settings.relay_batch_size)
    context.add_output_metadata({"claimed": report.claimed, "sent": len(report.sent),
                                 "retrying": len(report.retrying), "failed": len(report.failed)})
    for msg_id, error in report.errors.items():
        context.log.warning(f"email {msg_id} not sent: {error}")
    return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed}


@dg.job(tags={"domain": "onboarding"})
def screen_application_job():
    screen_application_op()


@dg.job(tags={"domain": "onboarding"})
def carry_out_decision_job():
    carry_out_decision_op()


@dg.job(tags={"domain": "onboarding"})
def relay_emails_job():
    relay_emails_op()
