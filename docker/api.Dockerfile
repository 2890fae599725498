# The control-plane API: `uvicorn api.main:app`, one worker per container by default (scale with
# replicas); for several workers per container set PROMETHEUS_MULTIPROC_DIR to an empty directory
# so /metrics sums them (deploy/k8s does). Build from the repository root (`make images` does this):
#   podman build -f docker/api.Dockerfile -t noderr/api:0.1.0 .
# Two stages: the virtualenv is built with the API's run-time dependency set only
# (docker/runtime_requirements.py: no Dagster, no model training, no local-development services)
# and copied into a clean runtime stage without pip. BASE_IMAGE defaults to the production base.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /app
# Dependencies first (their own layer), pinned by constraints.txt.
COPY pyproject.toml constraints.txt README.md ./
COPY docker/runtime_requirements.py docker/runtime_requirements.py
RUN python3 -m venv /opt/venv \
    && python3 docker/runtime_requirements.py api > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt
# The code. An editable install keeps PROJECT_ROOT at /app, where contracts/ and the templates live.
COPY noderr_core/ noderr_core/
COPY noderr_protocol/ noderr_protocol/
COPY noderr_local/ noderr_local/
COPY noderr_cli/ noderr_cli/
COPY api/ api/
COPY contracts/ contracts/
# The import check is the proof that the trimmed dependency set is enough.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps -c constraints.txt -e . \
    && /opt/venv/bin/python -c "import api.main, api.observability, noderr_core.migrations, noderr_cli.main" \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
    && rm -rf /app/build /tmp/requirements.txt

FROM ${BASE_IMAGE} AS api
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NODERR_STATE_DIR=/var/lib/noderr \
    NODERR_API_HOST=0.0.0.0 \
    NODERR_API_PORT=8000
RUN groupadd --system --gid 10001 noderr \
    && useradd --system --uid 10001 --gid noderr --home-dir /app --shell /usr/sbin/nologin noderr \
    && mkdir -p /var/lib/noderr \
    && chown noderr:noderr /var/lib/noderr
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
# --no-access-log: the app writes its own access log (JSON, request ids, no secrets).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--proxy-headers"]
