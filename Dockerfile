# One image recipe for every service: `docker build --build-arg SERVICE=invoice-svc .`
# The build context is the whole uv workspace, because services depend on libs/.
FROM python:3.12-slim AS build
ARG SERVICE
RUN test -n "$SERVICE" || (echo "--build-arg SERVICE=<invoice-svc|payment-svc|dunning-svc|notify-svc> is required" && false)
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs/ libs/
COPY services/ services/
# Only the chosen service and the libs it needs, without dev tools.
RUN uv sync --frozen --no-dev --no-editable --package "$SERVICE"

FROM python:3.12-slim
ARG SERVICE
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DUNNING_HOST=0.0.0.0 \
    DUNNING_DATA_DIR=/data \
    SERVICE=$SERVICE
RUN useradd --system --uid 10001 --home-dir /app dunning && mkdir /data && chown dunning /data
COPY --from=build /app/.venv /app/.venv
USER dunning
WORKDIR /app
EXPOSE 8001 8002 8003 8004
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"DUNNING_PORT\", \"8001\")}/healthz', timeout=2)"
# The console script of the service: invoice-svc, payment-svc, dunning-svc or notify-svc.
CMD ["sh", "-c", "exec \"$SERVICE\""]
