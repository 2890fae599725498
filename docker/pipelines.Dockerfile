# Dagster for the Noderr pipelines: one image, three roles chosen by the command —
#   user code (gRPC):  dagster api grpc -m noderr_pipelines.definitions -a defs -h 0.0.0.0 -p 4000
#   webserver:         dagster-webserver -w /app/docker/workspace.docker.yaml -h 0.0.0.0 -p 3000
#   daemon:            dagster-daemon run -w /app/docker/workspace.docker.yaml
# Storage is PostgreSQL (dagster_home/dagster.postgres.yaml installed as $DAGSTER_HOME/dagster.yaml).
# Build from the repository root (`make images` does this):
#   podman build -f docker/pipelines.Dockerfile -t noderr/pipelines:0.1.0 .
# Two stages: the virtualenv holds the pipelines' run-time dependency set only
# (docker/runtime_requirements.py) and is copied into a clean runtime stage without pip.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY docker/runtime_requirements.py docker/runtime_requirements.py
RUN python3 -m venv /opt/venv \
    && python3 docker/runtime_requirements.py pipelines > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
COPY noderr_core/ noderr_core/
COPY noderr_protocol/ noderr_protocol/
COPY noderr_pipelines/ noderr_pipelines/
COPY noderr_local/ noderr_local/
COPY noderr_cli/ noderr_cli/
COPY contracts/ contracts/
COPY docker/workspace.docker.yaml docker/workspace.docker.yaml
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -c constraints.txt -e . \
    && /opt/venv/bin/python -c "import noderr_pipelines.definitions" \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && rm -rf /app/build /tmp/requirements.txt

FROM ${BASE_IMAGE} AS pipelines
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NODERR_STATE_DIR=/var/lib/noderr \
    DAGSTER_HOME=/opt/dagster/home
RUN groupadd --system --gid 10001 noderr \
    && useradd --system --uid 10001 --gid noderr --home-dir /app --shell /usr/sbin/nologin noderr \
    && mkdir -p /var/lib/noderr /opt/dagster/home \
    && chown noderr:noderr /var/lib/noderr /opt/dagster/home
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --chown=noderr:noderr dagster_home/dagster.postgres.yaml /opt/dagster/home/dagster.yaml

USER 10001:10001
EXPOSE 3000 4000
# The default role is the user-code server; compose overrides the command for webserver and daemon
# (and their healthchecks).
HEALTHCHECK --interval=20s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]
CMD ["dagster", "api", "grpc", "--module-name", "noderr_pipelines.definitions", "--attribute", "defs", "--host", "0.0.0.0", "--port", "4000"]
