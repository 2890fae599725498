"""The whole Dagster code location loads, as `dagster-webserver -w workspace.yaml` would load it,
and matches its snapshot: every asset (group, owners, domain), asset check, job (tags, retry
policy, owners), sensor (target, interval, default status) and schedule (cron, job).

A change to the graph fails this test until the snapshot is regenerated on purpose:

    NODERR_UPDATE_DEFINITIONS_SNAPSHOT=1 python -m pytest tests/platform/test_definitions.py

and the diff of `definitions_snapshot.json` is reviewed with the change (as
dagster-open-platform's test_defs.py does for its specs, jobs and crons).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _load_repository():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # beta/preview API notices
        from noderr_pipelines.definitions import defs

        dg.Definitions.validate_loadable(defs)
        return defs.get_repository_def()


def _retry(policy: dg.RetryPolicy | None) -> dict | None:
    if policy is None:
        return None
    return {"max_retries": policy.max_retries, "delay": policy.delay,
            "backoff": policy.backoff.value if policy.backoff else None}


def graph_snapshot(repo) -> dict:
    asset_graph = repo.asset_graph
    assets = {}
    for key in sorted(asset_graph.get_all_asset_keys()):
        node = asset_graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "owners": sorted(node.owners),
            "domain": node.tags.get("noderr/domain"),
            "deps": sorted(dep.to_user_string() for dep in node.parent_keys),
        }
    checks = sorted(
        f"{check.asset_key.to_user_string()}:{check.name}"
        for check in asset_graph.asset_check_keys
    )
    jobs = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = {
            "tags": dict(sorted(job.tags.items())),
            "op_retry_policy": _retry(job.op_retry_policy),
            "owners": sorted(job.owners or []),
            "partitioned": job.partitions_def is not None,
        }
    sensors = {
        sensor.name: {
            "jobs": sorted(target.job_name for target in sensor.targets),
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "default_status": sensor.default_status.value,
        }
        for sensor in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    schedules = {
        schedule.name: {
            "job": schedule.job_name,
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "default_status": schedule.default_status.value,
        }
        for schedule in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets, "asset_checks": checks, "jobs": jobs, "sensors": sensors,
        "schedules": schedules, "resources": sorted(repo.get_top_level_resources()),
    }


def test_whole_definitions_match_the_snapshot():
    found = graph_snapshot(_load_repository())
    if os.environ.get("NODERR_UPDATE_DEFINITIONS_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected:
        assert found[part] == expected[part], f"{part} changed: regenerate the snapshot on purpose"
    assert set(found) == set(expected)


def test_policy_is_applied_to_every_job_and_asset():
    repo = _load_repository()
    for job in repo.get_all_jobs():
        if job.name.startswith("__"):
            continue
        assert job.tags.get("noderr/platform") == "noderr", job.name
        assert job.tags.get("noderr/domain"), job.name
        assert job.owners, job.name
        if not job.asset_layer.selected_asset_keys:
            # op jobs retry with the central policy; asset jobs keep their assets' own policies
            assert job.op_retry_policy is not None, job.name
    asset_graph = repo.asset_graph
    for key in asset_graph.get_all_asset_keys():
        assert asset_graph.get(key).owners, key


def test_every_sensor_launches_a_job_of_this_code_location():
    repo = _load_repository()
    all_jobs = {job.name for job in repo.get_all_jobs()}
    for sensor in repo.sensor_defs:
        assert sensor.targets, f"{sensor.name} launches nothing"
        for target in sensor.targets:
            assert target.job_name in all_jobs, (sensor.name, target.job_name)
    health = repo.get_sensor_def("node_health_sensor")
    assert health.job_name == "node_health_job"
    assert health.default_status == dg.DefaultSensorStatus.RUNNING
