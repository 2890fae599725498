"""Onboarding jobs: screen one application, carry out one decision (emails: defs/outbox).

Each job is idempotent through its core function (status checks under a row lock, outbox
idempotency keys), so Dagster retries and manual re-executions are safe.
"""


import dagster as dg

from noderr_core.audit import Actor
from noderr_core.onboarding.provisioning import carry_out_decision
from noderr_core.onboarding.screening import screen_application
from noderr_pipelines.defs.onboarding.resources import OnboardingSettings
from noderr_pipelines.resources import DatabaseResource

class ApplicationConfig(dg.Config):
    application_id: int


@dg.op
def screen_application_op(context: dg.OpExecutionContext, config: ApplicationConfig,
                          database: DatabaseResource) -> dict:
    """Run the screening checks; pending_review with notes, or rejected for hard failures."""
    with database.session() as session:
        result = screen_application(session, config.application_id, Actor.pipeline(context.run_id, "screening"))
    context.add_output_metadata({"status": str(result.status), "screened": result.screened,
                                 "notes": len(result.notes)})
    return {"application_id": result.application_id, "status": str(result.status)}


@dg.op
def carry_out_decision_op(context: dg.OpExecutionContext, config: ApplicationConfig,
                          database: DatabaseResource, onboarding_settings: OnboardingSettings) -> dict:
    """Provision an approved application or queue the rejection email (one transaction)."""
    with database.session() as session:
        outcome = carry_out_decision(session, application_id=config.application_id,
                                     settings=onboarding_settings.settings(),
                                     actor=Actor.pipeline(context.run_id, "provisioning"))
    context.add_output_metadata({"action": outcome.action, "node_id": outcome.node_id or ""})
    return {"application_id": outcome.application_id, "action": outcome.action, "node_id": outcome.node_id}


@dg.job
def screen_application_job():
    screen_application_op()


@dg.job
def carry_out_decision_job():
    carry_out_decision_op()
