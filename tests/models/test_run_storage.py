"""The run IO manager: step outputs in S3 when NODERR_DAGSTER_IO_BUCKET is set, else DAGSTER_HOME.

The slow webserver test re-executes a step in a fresh process; this one checks, quickly, where
outputs land and that a later run (a new IO manager, nothing in memory) reads them back.
"""

from __future__ import annotations

import dagster as dg

from noderr_pipelines.lib.run_storage import RunStorageIOManager


@dg.asset
def upstream() -> dict:
    return {"rows": [1, 2, 3]}


@dg.asset
def downstream(upstream: dict) -> int:
    return sum(upstream["rows"])


def test_outputs_go_to_s3_and_a_later_run_reads_them(s3_server, s3_bucket, monkeypatch, tmp_path):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NODERR_DAGSTER_IO_BUCKET", s3_bucket)
    monkeypatch.setenv("NODERR_DAGSTER_IO_PREFIX", "runs/io")
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert dg.materialize([upstream], instance=instance,
                              resources={"io_manager": RunStorageIOManager()}).success
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(
            Bucket=s3_bucket, Prefix="runs/io/").get("Contents", [])]
        assert keys == ["runs/io/upstream"]
        # Only the downstream step, in a new run: its input comes from S3.
        result = dg.materialize([upstream, downstream], selection=["downstream"], instance=instance,
                                resources={"io_manager": RunStorageIOManager()})
        assert result.output_for_node("downstream") == 6
        assert not (tmp_path / "home" / "storage" / "upstream").exists()


def test_without_a_bucket_outputs_stay_under_dagster_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NODERR_DAGSTER_IO_BUCKET", raising=False)
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        assert dg.materialize([upstream], instance=instance,
                              resources={"io_manager": RunStorageIOManager()}).success
        assert (tmp_path / "home" / "storage" / "upstream").is_file()
