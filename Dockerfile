# syntax=docker/dockerfile:1
#
# One image recipe for all four services:
#
#   docker build --build-arg SERVICE=invoice-svc --build-arg PORT=8001 -t invoice-svc .
#
# SERVICE is the uv workspace member and its console script (invoice-svc, payment-svc,
# dunning-svc, notify-svc); PORT is the port it listens on (8001-8004). The build context
# is the repository root, because every service depends on libs/ through the workspace.
# docker-compose.yml passes both arguments for each service.

ARG PYTHON_IMAGE=python:3.12-slim

# --- build: resolve and install one service into /app/.venv -----------------------------
FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
RUN test -n "$SERVICE" || { echo "--build-arg SERVICE=<invoice-svc|payment-svc|dunning-svc|notify-svc> is required" >&2; exit 1; }
RUN pip install --no-cache-dir "uv>=0.5,<1"
# Compile bytecode at build time (the runtime filesystem may be read-only), copy files
# out of the cache mount, and use the image's Python rather than downloading one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# uv.lock* : the build still works before the lock file is committed (then unpinned).
COPY pyproject.toml uv.lock* ./
COPY libs/ libs/
COPY services/ services/
# Only the chosen service and the libraries it needs: no dev tools, no other service.
# --no-editable installs real wheels, so the runtime stage needs only the venv.
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ -f uv.lock ]; then \
        uv sync --frozen --no-dev --no-editable --package "$SERVICE"; \
    else \
        echo "warning: no uv.lock, resolving dependencies afresh" >&2; \
        uv sync --no-dev --no-editable --package "$SERVICE"; \
    fi
RUN test -x "/app/.venv/bin/$SERVICE" || { echo "$SERVICE installs no console script named $SERVICE" >&2; exit 1; }

# --- runtime: the venv and a non-root user, nothing else ---------------------------------
FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
RUN test -n "$PORT" || { echo "--build-arg PORT=<8001|8002|8003|8004> is required" >&2; exit 1; }
RUN groupadd --system --gid 10001 dunning \
    && useradd --system --uid 10001 --gid dunning --home-dir /app --no-create-home dunning \
    && install -d -o dunning -g dunning /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=$SERVICE \
    DUNNING_HOST=0.0.0.0 \
    DUNNING_PORT=$PORT \
    DUNNING_DATA_DIR=/data
LABEL org.opencontainers.image.title="$SERVICE" \
      org.opencontainers.image.description="Dunning platform: $SERVICE"
WORKDIR /app
USER 10001:10001
EXPOSE $PORT
# /healthz: the process is up. Orchestrators gate traffic on /readyz (database and bus).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['DUNNING_PORT'] + '/healthz', timeout=3)"]
# The service's console script (uvicorn on DUNNING_HOST:DUNNING_PORT); exec makes it PID 1
# so it receives SIGTERM directly and shuts down gracefully.
CMD ["sh", "-c", "exec \"$SERVICE\""]
