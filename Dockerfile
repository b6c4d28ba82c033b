# Wardgate: the wheel built in one stage, installed (not editable) in a slim runtime stage.
#   docker build -t wardgate .
#   docker run --env-file wardgate.env -p 8000:8000 wardgate            # gateway + portal
#   docker run --env-file wardgate.env wardgate serve --only gateway --host 0.0.0.0 --workers 2
# Migrations: `docker run --env-file wardgate.env wardgate migrate` (compose.yaml runs it first).

FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY wardgate ./wardgate
COPY policy ./policy
COPY proxy ./proxy
COPY audit ./audit
COPY portal ./portal
COPY reports ./reports
COPY bigquery_mcp ./bigquery_mcp
# Wheels for Wardgate and every dependency, so the runtime stage needs no compiler or network.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WARDGATE_MODE=production \
    WARDGATE_VAR_DIR=/var/lib/wardgate \
    WARDGATE_PACK_DIR=/var/lib/wardgate/packs
RUN groupadd --system --gid 10001 wardgate \
    && useradd --system --uid 10001 --gid wardgate --home-dir /var/lib/wardgate \
       --create-home --shell /usr/sbin/nologin wardgate
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels wardgate && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/wardgate
EXPOSE 8000
# /readyz: 200 when the database (and the broker/Redis) answer, 503 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
ENTRYPOINT ["wardgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
