"""The scale-out deployment, validated offline: Kubernetes manifests, Helm values, Dagster instances.

- deploy/k8s: every manifest validates against the Kubernetes 1.33 OpenAPI schema (strict, the
  schemas ship inside `kubernetes-validate`), and the objects fit together (selectors, probes on
  declared ports, HPA/PDB on the Deployment, config maps that exist, /readyz served by the app).
- deploy/helm/dagster-values.yaml (Dagster's official chart): the Dagster parts validate against
  the config schemas of the classes the chart renders them into (K8sRunLauncher,
  S3ComputeLogManager), the Kubernetes parts against the Kubernetes schema, and the user-code
  deployment loads this project's Definitions.
- dagster_home/*.yaml: each instance config validates against Dagster's instance schema, and its
  run launcher and compute-log manager are built from it with the documented environment.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "k8s"
HELM_VALUES = ROOT / "deploy" / "helm" / "dagster-values.yaml"
KUBERNETES_VERSION = "1.33.0"


def manifests() -> dict[str, list[dict]]:
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            for path in sorted(K8S_DIR.glob("*.yaml")) if path.name != "kustomization.yaml"}


def objects(kind: str) -> list[dict]:
    return [doc for docs in manifests().values() for doc in docs if doc["kind"] == kind]


def one(kind: str, name: str) -> dict:
    (found,) = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_validates_against_the_kubernetes_schema(name):
    for document in manifests()[name]:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_refused():
    bad = one("Deployment", "noderr-api")
    bad = {**bad, "spec": {**bad["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(manifests())


def test_api_deployment_hpa_pdb_and_service_fit_together():
    deployment = one("Deployment", "noderr-api")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "http" in ports

    service = one("Service", "noderr-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]

    hpa = one("HorizontalPodAutoscaler", "noderr-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "noderr-api"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = one("PodDisruptionBudget", "noderr-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]

    # Settings come from a config map that exists; the metrics directory is a mounted volume.
    config_maps = {c["metadata"]["name"]: c["data"] for c in objects("ConfigMap")}
    refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    (config,) = [config_maps[name] for name in refs]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert config["PROMETHEUS_MULTIPROC_DIR"] in mounts
    assert int(config["NODERR_API_PORT"]) == ports["http"]
    # The args read host, port and workers from that config map.
    for variable in ("NODERR_API_HOST", "NODERR_API_PORT", "UVICORN_WORKERS"):
        assert f"$({variable})" in " ".join(container["args"]) and variable in config


def test_the_app_serves_the_probes_the_manifests_use():
    from api.main import create_app
    from noderr_core.settings import Settings

    from fastapi.testclient import TestClient

    client = TestClient(create_app(Settings(env="test")))
    for path in ("/readyz", "/healthz", "/metrics"):
        assert client.get(path).status_code != 404, path


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_helm_values_for_dagsters_chart():
    values = yaml.safe_load(HELM_VALUES.read_text())

    # User code: the pipelines image serving this project's Definitions over gRPC.
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    dockerfile = (ROOT / "docker" / "pipelines.Dockerfile").read_text()
    image = deployment["image"]
    assert f"-t {image['repository']}:{image['tag']} " in dockerfile
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    attribute = args[args.index("--attribute") + 1]
    assert isinstance(getattr(importlib.import_module(module), attribute), dg.Definitions)

    # Runs as Kubernetes Jobs: the chart renders k8sRunLauncher into K8sRunLauncher's config.
    from dagster_k8s import K8sRunLauncher

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    rendered = {_snake(k): v for k, v in launcher.items()}
    for key in ("env_config_maps", "env_secrets"):
        rendered[key] = [ref["name"] for ref in rendered[key]]
    rendered["run_k8s_config"] = {_snake(k): v for k, v in rendered["run_k8s_config"].items()}
    # Fields the chart fills in itself (its instance config map, service account, DAGSTER_HOME).
    rendered.update({"instance_config_map": "noderr-dagster-instance",
                     "service_account_name": "noderr-dagster",
                     "dagster_home": "/opt/dagster/dagster_home",
                     "postgres_password_secret": values["global"]["postgresqlSecretName"]})
    result = process_config(K8sRunLauncher.config_type(), rendered)
    assert result.success, result.errors

    # Compute logs in S3: the chart renders s3ComputeLogManager into S3ComputeLogManager's config.
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager

    assert values["computeLogManager"]["type"] == "S3ComputeLogManager"
    s3_logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    result = process_config(S3ComputeLogManager.config_type(),
                            {_snake(k): v for k, v in s3_logs.items()})
    assert result.success, result.errors

    # dagster-postgres on an external server; the password from a Secret, not the values.
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlHost"]
    assert isinstance(postgres["service"]["port"], int) and "postgresqlPassword" not in postgres
    assert values["global"]["postgresqlSecretName"]

    # Kubernetes structures inside the values validate as the pod specs they end up in.
    config_maps = {c["metadata"]["name"] for c in objects("ConfigMap")}
    for section in (values["dagsterWebserver"], values["dagsterDaemon"], deployment):
        assert {ref["name"] for ref in section["envConfigMaps"]} <= config_maps
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "values-check"},
               "spec": {"securityContext": section.get("podSecurityContext", {}),
                        "containers": [{"name": "c", "image": "i",
                                        "resources": section["resources"]}]}}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    container_config = launcher["runK8sConfig"]["containerConfig"]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "run"},
         "spec": {"containers": [{"name": "dagster", "image": "i", **container_config}]}},
        KUBERNETES_VERSION, strict=True)


INSTANCE_ENV = {
    "DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_PORT": "6543", "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "pw", "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "noderr-dagster", "DAGSTER_S3_ENDPOINT_URL": "http://s3:8333",
    "DAGSTER_RUN_IMAGE": "noderr/pipelines:0.1.0", "DAGSTER_DOCKER_NETWORK": "noderr_default",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.postgres.yaml", "dagster.docker.yaml"])
def test_dagster_instance_configs_validate_and_build(name, monkeypatch):
    for key, value in INSTANCE_ENV.items():
        monkeypatch.setenv(key, value)
    config, _ = dagster_instance_config(str(ROOT / "dagster_home"), name)
    if name == "dagster.yaml":
        return  # the local default: SQLite, in-process launcher, local compute logs
    assert config["storage"]["postgres"]["postgres_db"]["port"] == {"env": "DAGSTER_PG_PORT"}
    for key in ("run_launcher", "compute_logs"):
        section = config[key]
        built = ConfigurableClassData(section["module"], section["class"],
                                      yaml.safe_dump(section.get("config") or {})).rehydrate(object)
        assert type(built).__name__ == section["class"]


def test_docker_launcher_instance_differs_from_the_postgres_one_only_in_the_launcher():
    base = yaml.safe_load((ROOT / "dagster_home" / "dagster.postgres.yaml").read_text())
    docker = yaml.safe_load((ROOT / "dagster_home" / "dagster.docker.yaml").read_text())
    assert docker["run_launcher"]["class"] == "DockerRunLauncher"
    assert {k: v for k, v in docker.items() if k != "run_launcher"} == {
        k: v for k, v in base.items() if k != "run_launcher"}
    override = yaml.safe_load((ROOT / "docker-compose.docker-launcher.yml").read_text())
    for service in ("dagster-daemon", "dagster-webserver"):
        volumes = override["services"][service]["volumes"]
        assert "./dagster_home/dagster.docker.yaml:/opt/dagster/home/dagster.yaml:ro" in volumes
    # Every variable the instance reads is set on the compose Dagster services.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    text = (ROOT / "dagster_home" / "dagster.docker.yaml").read_text()
    needed = set(re.findall(r"env: (\w+)", text)) - {"DAGSTER_RUN_IMAGE", "DAGSTER_DOCKER_NETWORK"}
    for service in ("dagster-daemon", "dagster-webserver", "pipelines-code"):
        assert needed <= set(compose["services"][service]["environment"]), service
    # The launcher forwards each listed variable from the daemon's environment (compose file or
    # .env.production): none may be missing there.
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.production.example")
                                .read_text(), re.MULTILINE))
    daemon_env = (set(compose["services"]["dagster-daemon"]["environment"])
                  | set(override["services"]["dagster-daemon"]["environment"]))
    missing = set(docker["run_launcher"]["config"]["env_vars"]) - daemon_env - documented
    assert not missing, missing
