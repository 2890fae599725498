"""Demo step: a second catalog model on its own lineage, and the rollout state in the catalog.

After the reference model is active, the ML team's second catalog model (`iris-tree`) is
materialized through the webserver as its own lineage (`publish_iris_tree_job`), and the Dagster
asset catalog is read back over GraphQL: per model, the published version and the rollout state
recorded by the promotion jobs (active version, canary, beacon sequence).
"""

from __future__ import annotations

from noderr_demo.dagster_ui import DagsterUI
from noderr_demo.report import DemoFailure, DemoReport
from noderr_demo.stack import DemoEnvironment

SECOND_MODEL_JOB = "publish_iris_tree_job"


def catalog_journey(report: DemoReport, demo: DemoEnvironment) -> None:
    ui = DagsterUI(demo.dagster_port)
    with report.step("model", "a second model materializes on its own lineage") as s:
        run_id = ui.run(SECOND_MODEL_JOB, timeout=900)
        published = ui.latest_asset_events("iris_tree_published")["materialization"]
        if published.get("status") != "staged":
            raise DemoFailure(f"iris_tree_published shows {published or 'nothing'}, expected staged")
        s.detail = f"iris-tree v{published['version']} staged (run {ui.run_url(run_id)})"
    with report.step("model", "the asset catalog shows each model's rollout state") as s:
        reference = ui.latest_asset_events("iris_classifier_published")["observation"]
        if "active_version" not in reference:
            raise DemoFailure(f"iris_classifier_published has no rollout observation: {reference}")
        s.detail = (f"iris-classifier: {reference['rollout']} (beacon seq "
                    f"{reference['beacon_sequence']}); iris-tree: staged, not rolled out")
