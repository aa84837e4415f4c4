# SynTumor web app: `docker build -t syntumor .` then
#   docker run -p 8000:8000 -v syntumor-data:/data syntumor
#   docker run --rm -it -v syntumor-data:/data syntumor syntumor users create-admin --generate
# Data (SQLite database, volumes, results, pulled models, the cookie key) live in the volume /data.
# For a GPU: --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
#            --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# and `docker run --gpus all …`. PostgreSQL and `syntumor worker` containers: set
# SYNTUMOR_DATABASE_URL=postgresql+psycopg://… and share /data between them.
# Any Debian or Ubuntu image works as BASE_IMAGE (one without Python gets the distribution's,
# which must be 3.11 or newer); `make docker-check` builds on one made with debootstrap.
ARG BASE_IMAGE=python:3.11-slim

# --- The browser viewer (NiiVue, Swagger UI, ReDoc), pinned by package-lock.json: Node and npm
# only in this stage; the app serves node_modules as files (nothing is built).
FROM ${BASE_IMAGE} AS web
ARG NPM_CONFIG_REGISTRY
ARG NPM_CONFIG_CAFILE
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error && touch node_modules/.installed

# --- The app.
FROM ${BASE_IMAGE}

# TORCH_INDEX_URL empty: torch from the package index (or PIP_FIND_LINKS) alone.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Package registries other than the public ones, or behind a TLS-inspecting proxy: these build
# args are unset by default and, as build args, not kept in the image's environment (they show
# in `docker history`: no passwords in them). PIP_CERT / NPM_CONFIG_CAFILE name a CA bundle in
# the image, e.g. /etc/ssl/certs/ca-certificates.crt of a base image that trusts the proxy
# (the NPM_ ones are declared in the web stage above).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SYNTUMOR_DATA_DIR=/data

# Python 3.11+ from the base image, or from the distribution on images without one (CUDA
# images, plain Debian).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
       $(command -v python3 >/dev/null 2>&1 || echo python3 python3-venv) \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

WORKDIR /app

# torch first, from the CPU (or CUDA) wheel index, at the version constraints.txt pins.
COPY constraints.txt ./
RUN pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -c constraints.txt torch

# The other dependencies, read from pyproject.toml (a layer that survives source changes).
COPY pyproject.toml ./
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The browser viewer from the web stage (.dockerignore keeps the host's node_modules out).
COPY --from=web /app/node_modules ./node_modules

# The project itself, editable so that app/ finds static/, templates/ and models/ beside it.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /data syntumor \
    && mkdir -p /data && chown syntumor /data

USER syntumor
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["syntumor", "serve", "--host", "0.0.0.0"]
