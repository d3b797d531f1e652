# syntax=docker/dockerfile:1
#
# Managed-agents worker image: the brain (workflows and model calls) and/or the hands (sandbox tools).
#
#   docker build -t managed-agents-worker .
#   docker run --rm -e TEMPORAL_ADDRESS=host:7233 -e ANTHROPIC_API_KEY=... \
#       -v managed-agents-data:/data managed-agents-worker [--role brain|sandbox] [--sandbox-id ID]
#
# Arguments after the image name are worker.py flags (`docker run ... managed-agents-worker --help`).
# Configuration comes from the environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
# ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, MANAGED_AGENTS_STORE_URL (postgresql+psycopg://... to share
# the session store between hosts), MANAGED_AGENTS_ROLE, MANAGED_AGENTS_SANDBOX_ID (give every
# sandbox worker a stable id: sessions are pinned to it), ... See docker-compose.yml for a stack.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: install the project and the PostgreSQL driver into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY managed_agents ./managed_agents
# The versions CI tests: every dependency at its uv.lock version (no dev extras; psycopg[binary]
# for postgresql+psycopg:// store URLs is among them), then the project itself.
RUN pip install uv==0.13.10 \
    && uv export --locked --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && pip install --no-deps .

# ---- runtime --------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# Tools the agents' bash tool finds in the sandbox (bash itself ships with the base image).
# Extend with --build-arg SANDBOX_APT_PACKAGES="git curl jq ...".
ARG SANDBOX_APT_PACKAGES="ca-certificates git curl"
# bubblewrap isolates the agents' bash commands (the worker refuses bash without it). In a container
# it needs user namespaces: run with a seccomp/AppArmor profile that allows them (see README).
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ${SANDBOX_APT_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed uid/gid (so runAsNonRoot-style checks and volume permissions work).
RUN groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --create-home --home-dir /home/agent \
       --shell /usr/sbin/nologin agent \
    && mkdir -p /data \
    && chown agent:agent /data

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY worker.py ./

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MANAGED_AGENTS_DATA_DIR=/data \
    MANAGED_AGENTS_LOG_FORMAT=json

# SQLite store (when no MANAGED_AGENTS_STORE_URL is given) and the session workspaces of a sandbox.
# /data is created above owned by the agent user, so a new named volume mounted here is writable.
VOLUME ["/data"]

USER 10001:10001

# The worker stops cleanly on SIGTERM (docker stop). Run it with an init (compose `init: true`,
# `docker run --init`) so processes orphaned by the agents' bash commands are reaped.
ENTRYPOINT ["python", "worker.py"]
