"""docker-compose files validate against the Compose schema (dclint) and keep secrets out.

Checks the platform's docker-compose.yml (strict: no warnings), the operator bundle's compose file
as the onboarding bundle builder produces it, and the production env example.
"""

from __future__ import annotations

import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from noderr_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DCLINT = ROOT / "node_modules" / ".bin" / "dclint"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.production.example"
SECRET_VARIABLES = [
    "POSTGRES_PASSWORD",
    "NODERR_SECRET_KEY",
    "NODERR_TYPEFORM_SECRET",
    "NODERR_BOOTSTRAP_ADMIN_PASSWORD",
    "NODERR_S3_SECRET_ACCESS_KEY",
    "NODERR_MODEL_SIGNING_KEY",
    "NODERR_CHAIN_SIGNER_KEY",
]


def dclint(path: Path, *extra: str) -> subprocess.CompletedProcess:
    if not DCLINT.exists():
        pytest.fail(f"dclint not found at {DCLINT}: run `make setup` (npm tools)")
    return subprocess.run(
        [str(DCLINT), "--config", str(ROOT / ".dclintrc"), "--color", "false", *extra, str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def compose_doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_platform_compose_is_valid_and_lint_clean():
    result = dclint(COMPOSE, "--max-warnings", "0")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dclint_rejects_a_compose_file_outside_the_schema(tmp_path):
    # Guards the check itself: a misspelt key and a wrongly typed value are schema errors.
    bad = tmp_path / "docker-compose.yml"
    bad.write_text('services:\n  api:\n    image: "noderr/api:0.1.0"\n    helthcheck: {}\n')
    result = dclint(bad)
    assert result.returncode != 0
    assert "invalid-schema" in result.stdout


@pytest.mark.parametrize("tier", [None, "gpu"])
def test_operator_bundle_compose_is_valid(tmp_path, tier):
    from noderr_core.onboarding import bundle
    settings = Settings(env="test", state_dir=tmp_path / "state",
                        node_image_digest="sha256:" + "ab" * 32)
    built = bundle.build_bundle(settings, node_id="node_0123456789abcdef", api_key="nk_x_y",
                                tier=tier)
    with zipfile.ZipFile(io.BytesIO(built.content)) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/docker-compose.yml"))
        path = tmp_path / "docker-compose.yml"
        path.write_bytes(zf.read(name))
    result = dclint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_platform_services_and_their_healthchecks():
    services = compose_doc()["services"]
    assert set(services) == {
        "postgres", "s3", "migrate", "api", "pipelines-code", "dagster-webserver", "dagster-daemon"
    }
    for name, service in services.items():
        if name != "migrate":  # a one-shot job, not a long-running service
            assert "healthcheck" in service, f"{name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
    assert services["migrate"]["command"] == ["noderr", "db", "upgrade"]
    for name in ("api", "pipelines-code"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # The Dagster UI has no login: it must never listen on a public interface.
    assert services["dagster-webserver"]["ports"] == ["127.0.0.1:3000:3000"]


def test_no_secret_has_a_default():
    text = COMPOSE.read_text()
    for variable in SECRET_VARIABLES:
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, f"{variable} is not used in docker-compose.yml"
        for modifier in uses:
            assert modifier.startswith(":?"), f"${{{variable}{modifier}}} must fail when unset (:?)"


def test_dagster_services_use_postgres_storage_and_the_grpc_workspace():
    services = compose_doc()["services"]
    instance = yaml.safe_load((ROOT / "dagster_home" / "dagster.postgres.yaml").read_text())
    needed = {
        v["env"] for v in instance["storage"]["postgres"]["postgres_db"].values()
        if isinstance(v, dict) and "env" in v
    }
    for name in ("pipelines-code", "dagster-webserver", "dagster-daemon"):
        env = services[name]["environment"]
        assert needed <= set(env), f"{name} lacks {needed - set(env)}"
        assert env["DAGSTER_HOME"] == "/opt/dagster/home"
    workspace = yaml.safe_load((ROOT / "docker" / "workspace.docker.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert grpc["host"] in services
    dockerfile = (ROOT / "docker" / "pipelines.Dockerfile").read_text()
    assert f'"--port", "{grpc["port"]}"' in dockerfile
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/app/docker/workspace.docker.yaml" in services[name]["command"]


def test_env_example_documents_every_setting_without_real_secrets():
    text = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*(NODERR_[A-Z0-9_]+)=", text, re.MULTILINE))
    missing = sorted(
        f"NODERR_{name.upper()}" for name in Settings.model_fields
        if f"NODERR_{name.upper()}" not in documented
    )
    assert not missing, f"add these settings to .env.production.example: {missing}"
    values = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    for variable in SECRET_VARIABLES:
        assert re.search(r"<[^>]+>", values[variable]), f"{variable} must be a <placeholder>"
    # And the compose file reads every variable it requires from that file.
    required = set(re.findall(r"\$\{([A-Z0-9_]+):?\?", COMPOSE.read_text()))
    assert required <= set(values), f"missing in the example: {sorted(required - set(values))}"
