# syntax=docker/dockerfile:1
#
# persona-stream worker image.
#
#   docker build -t persona-stream .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -e REDIS_URL=redis://redis:6379/0 \
#     -e PERSONA_HMAC_SECRET=... -p 6066:6066 persona-stream            # runs `persona worker`
#   docker run --rm persona-stream --help                              # any other `persona` command
#
# All runtime dependencies ship manylinux wheels for CPython 3.11 on x86_64, so no compiler is
# installed. See docs/operations.md.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv "$VIRTUAL_ENV" \
    && groupadd --system --gid 10001 persona \
    && useradd --system --uid 10001 --gid persona --home-dir /home/persona --create-home \
       --shell /usr/sbin/nologin persona \
    && mkdir -p /var/lib/persona \
    && chown persona:persona /var/lib/persona

WORKDIR /app

# The source stays in /app, owned by root and read-only for the worker. The project is installed
# in editable mode so that the code finds schemas/ next to it exactly as in a checkout (schemas/
# is not package data). README.* is optional for the build.
COPY pyproject.toml README.* ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
COPY schemas ./schemas
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -e . \
    && persona --help > /dev/null

USER persona

# Defaults for a container; every one can be overridden at `docker run` / in compose.
ENV PERSONA_WEB_HOST=0.0.0.0 \
    PERSONA_WEB_PORT=6066 \
    PERSONA_DATA_DIR=/var/lib/persona/data

EXPOSE 6066

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PERSONA_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["persona"]
CMD ["worker"]
