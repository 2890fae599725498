# The control-plane API: `uvicorn api.main:app`, one worker per container by default (scale with
# replicas, each scraped on its own /metrics); for several workers per container set
# PROMETHEUS_MULTIPROC_DIR to an empty directory so /metrics sums them (deploy/k8s does).
# Build from the repository root:
#   docker build -f docker/api.Dockerfile -t noderr/api:0.1.0 .
FROM python:3.11.11-slim-bookworm

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
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
# Dependencies first (their own layer): the runtime set from pyproject.toml, pinned by constraints.txt.
COPY pyproject.toml constraints.txt README.md ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code. An editable install keeps PROJECT_ROOT at /app, where contracts/ and the templates live.
COPY noderr_core/ noderr_core/
COPY noderr_protocol/ noderr_protocol/
COPY noderr_pipelines/ noderr_pipelines/
COPY node_service/ node_service/
COPY noderr_demo/ noderr_demo/
COPY api/ api/
COPY contracts/ contracts/
RUN pip install --no-cache-dir --no-deps -c constraints.txt -e . \
    && python -c "import api.observability, noderr_core.migrations"

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
# --no-access-log: the app writes its own access log (JSON, request ids, no secrets).
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--proxy-headers"]
