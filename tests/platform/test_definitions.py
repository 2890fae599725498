"""The whole Dagster code location loads, as `dagster-webserver -w workspace.yaml` would load it.

One test over every domain: the Definitions validate (every job, sensor and asset resolves, every
required resource is provided), and the jobs, sensors, schedules and asset groups the platform
relies on are present. Owners: add your definitions to EXPECTED when you add them.
"""

from __future__ import annotations

import warnings

import dagster as dg

EXPECTED = {
    "jobs": {
        # onboarding
        "screen_application_job", "carry_out_decision_job", "relay_emails_job",
        # models
        "promote_model_job", "rollback_model_job", "publish_onnx_file_job",
        "publish_reference_model_job",
        # network
        "node_health_job",
        # rewards
        "reward_epoch_job", "chain_relay_job", "close_epoch_job", "challenge_job",
    },
    "sensors": {
        "application_screening_sensor", "application_decision_sensor", "email_relay_sensor",
        "node_health_sensor", "chain_outbox_sensor",
    },
    "schedules": {"reward_epoch_job_schedule", "challenge_schedule"},
    "asset_groups": {"models", "rewards"},
    "resources": {"database", "node_health", "chain"},
}


def test_whole_definitions_load_with_every_domain():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # beta/preview API notices
        from noderr_pipelines.definitions import defs

        dg.Definitions.validate_loadable(defs)
        repo = defs.get_repository_def()
        asset_graph = repo.asset_graph
        found = {
            "jobs": {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")},
            "sensors": {sensor.name for sensor in repo.sensor_defs},
            "schedules": {schedule.name for schedule in repo.schedule_defs},
            "asset_groups": {
                asset_graph.get(key).group_name for key in asset_graph.get_all_asset_keys()
            },
            "resources": set(repo.get_top_level_resources()),
        }
    for kind, expected in EXPECTED.items():
        assert expected <= found[kind], f"{kind} missing: {sorted(expected - found[kind])}"

    # Every sensor launches a job of this code location (a sensor without a target is a no-op).
    all_jobs = {job.name for job in repo.get_all_jobs()}
    for sensor in repo.sensor_defs:
        assert sensor.targets, f"{sensor.name} launches nothing"
        for target in sensor.targets:
            assert target.job_name in all_jobs, (sensor.name, target.job_name)
    health = repo.get_sensor_def("node_health_sensor")
    assert health.job_name == "node_health_job"
    assert health.default_status == dg.DefaultSensorStatus.RUNNING
