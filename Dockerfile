# syntax=docker/dockerfile:1
# meshbatch: the proxy (`meshbatch run`) and the example mesh's consumer and producer
# (`python -m meshbatch.demo.consumer|producer`), in one image. Build from the repository root:
#   docker build -t ghcr.io/meshbatch/meshbatch:0.1.0 .
# MESHBATCH_COMPILE=1 (the default) compiles the hot path to C extensions with mypyc; 0 gives pure Python.
# Every extra is installed (Kubernetes discovery, tracing, the database and queue clients, the demo's services);
# MESHBATCH_EXTRAS=k8s (say) makes a slimmer proxy image.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG MESHBATCH_COMPILE=1
ARG MESHBATCH_EXTRAS=all
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY src ./src
RUN python -m venv /opt/meshbatch \
    && MESHBATCH_COMPILE=${MESHBATCH_COMPILE} /opt/meshbatch/bin/pip install ".[${MESHBATCH_EXTRAS}]" \
    && /opt/meshbatch/bin/meshbatch --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="meshbatch" \
      org.opencontainers.image.description="A service-mesh data plane with request microbatching" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 meshbatch \
    && useradd --system --uid 10001 --gid meshbatch --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin meshbatch \
    && install -d -o meshbatch -g meshbatch /etc/meshbatch /var/lib/meshbatch
COPY --from=build /opt/meshbatch /opt/meshbatch
ENV PATH=/opt/meshbatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MESHBATCH_ADMIN_PORT=9901
WORKDIR /var/lib/meshbatch
USER 10001:10001
EXPOSE 8080 9901
# The admin API's /ready: 200 while serving, 503 while draining. The config's admin.listen must be on
# MESHBATCH_ADMIN_PORT and reachable on 127.0.0.1 (0.0.0.0:9901 is).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/ready' % os.environ.get('MESHBATCH_ADMIN_PORT', '9901'), timeout=2)"]
ENTRYPOINT ["meshbatch"]
CMD ["run", "--config", "/etc/meshbatch/meshbatch.yaml"]
