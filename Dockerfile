# mock-runbase: the Runbase runs API mock in a container.
#
#   docker build -t mock-runbase .
#   docker run --rm -p 8080:8080 -e MOCK_RUNBASE_TIMING=fast mock-runbase
#
# Configure it with the environment variables the CLI reads: every `serve` option is also
# MOCK_RUNBASE_<NAME>, e.g. MOCK_RUNBASE_TIMING=fast|instant|realistic, MOCK_RUNBASE_CLOCK=virtual,
# MOCK_RUNBASE_RATE_LIMIT=20/10, MOCK_RUNBASE_NO_RATE_LIMIT=true, MOCK_RUNBASE_SEED=0,
# MOCK_RUNBASE_BALANCE_USD=100, MOCK_RUNBASE_STRICT_KEYS=true, MOCK_RUNBASE_PUBLIC_URL=...,
# MOCK_RUNBASE_CONFIG=/config/mock.yaml (mount the file: -v ./mock.yaml:/config/mock.yaml:ro).
# Several replicas or workers share their state through Redis: MOCK_RUNBASE_STORE=redis://redis:6379/0
# (and MOCK_RUNBASE_WORKERS=N for N uvicorn workers in one container); see docker-compose.yml.
# The host and port are set by CMD (a flag wins over its variable); the HEALTHCHECK expects 8080.

# Stage 1: build the project's wheel (the spec and the contract suite are packaged inside it).
FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md openapi.yaml mock-openapi.yaml ./
COPY mock_runbase/ ./mock_runbase/
COPY contracts/ ./contracts/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime, the wheel and its dependencies only, run by a non-root user.
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="mock-runbase" \
      org.opencontainers.image.description="A faithful local mock of the Runbase image-generation API" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --user-group --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin runbase

WORKDIR /srv
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8080/healthz', timeout=2)"]

ENTRYPOINT ["mock-runbase"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
