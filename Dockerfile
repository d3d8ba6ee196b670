# syntax=docker/dockerfile:1
# resmon images, one Dockerfile, one target per role (slim, non-root, dependencies
# pinned by uv.lock):
#   docker build --target agent -t resmon-agent .   # `resmon agent ...` and `resmon sim`
#   docker build --target hub   -t resmon-hub .     # `resmon hub ...` (the default target)
# Each image holds one virtualenv at /opt/resmon with only its role's extra.

# ---- build: resolve from uv.lock into /opt/resmon --------------------------------------
FROM python:3.11-slim-bookworm AS build-base
ENV UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/resmon
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY protocol protocol
COPY snmpber snmpber
COPY edge_agent edge_agent
COPY hub hub
COPY simulator simulator
COPY resmon resmon

FROM build-base AS build-agent
RUN uv sync --frozen --no-dev --no-editable --extra agent

FROM build-base AS build-hub
RUN uv sync --frozen --no-dev --no-editable --extra hub

# ---- runtime base: a system user, no build tools ----------------------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/resmon \
        --shell /usr/sbin/nologin resmon \
    && install -d -o resmon -g resmon -m 0750 /var/lib/resmon /var/lib/resmon/agent-buffer
ENV PATH=/opt/resmon/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/resmon
ENTRYPOINT ["resmon", "--log-format", "json"]

# ---- edge agent (also runs the simulator: `sim` needs nothing beyond the core) ---------
FROM runtime AS agent
COPY --from=build-agent /opt/resmon /opt/resmon
USER 10001:10001
# The buffer: mount a volume here (agent.yaml's buffer.directory).
VOLUME ["/var/lib/resmon/agent-buffer"]
EXPOSE 9464
CMD ["agent", "run", "-c", "/etc/resmon/agent.yaml"]

# ---- hub (last, so a plain `docker build .` gives the hub) -----------------------------
FROM runtime AS hub
COPY --from=build-hub /opt/resmon /opt/resmon
USER 10001:10001
ENV RESMON_HUB_HTTP=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
CMD ["hub", "run"]
