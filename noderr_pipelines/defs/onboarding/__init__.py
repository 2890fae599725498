"""Onboarding pipelines: screening and carrying out admin decisions (provisioning)."""

import dagster as dg

from noderr_pipelines.defs.onboarding.jobs import carry_out_decision_job, screen_application_job
from noderr_pipelines.defs.onboarding.resources import OnboardingSettings
from noderr_pipelines.defs.onboarding.sensors import (
    application_decision_sensor,
    application_screening_sensor,
)

defs = dg.Definitions(
    jobs=[screen_application_job, carry_out_decision_job],
    sensors=[application_screening_sensor, application_decision_sensor],
    resources={"onboarding_settings": OnboardingSettings()},
)
