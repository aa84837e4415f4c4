#!/usr/bin/env bash
# `make docker-check`: build the Docker image and use it for real. On a machine without Docker
# Hub: installs Debian's docker.io and debootstrap when missing (as root, like
# scripts/system-packages.sh), starts dockerd when none runs (and stops it again), makes a
# Debian base image with debootstrap (cached), builds the image on it with
# `--build-arg BASE_IMAGE=…`, runs it on a fresh named volume, and checks through the published
# port that `/`, `/docs` and a segmentation job with the demo model answer
# (scripts/docker-smoke.py), then removes the container and the volume.
#
# The build reaches the package registries the way this machine does: its pip index settings
# (http(s) ones) and npm registry go in as build args, the locally trusted CA certificates
# (/usr/local/share/ca-certificates, e.g. a TLS-inspecting proxy's) go into the base image, and
# torch comes as the wheel this machine's pip finds offline at constraints.txt's version (the
# CPU build), served to the build on a loopback port, not a CUDA build from the index.
#
# Settings (environment): SYNTUMOR_CHECK_IMAGE (syntumor:check), SYNTUMOR_CHECK_CACHE
# (/var/cache/syntumor-docker-check: the debootstrap tree, the torch wheel, logs),
# DEBIAN_MIRROR (http://deb.debian.org/debian), SYNTUMOR_CHECK_WHEEL_PORT (38517: the torch
# wheel's loopback port, kept fixed so that the build cache holds), SYNTUMOR_CHECK_BASE_IMAGE
# (use this base instead of the debootstrap one, e.g. python:3.11-slim where Docker Hub is
# reachable), SYNTUMOR_CHECK_SEGMENT_TIMEOUT_S (900).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${SYNTUMOR_CHECK_IMAGE:-syntumor:check}"
CACHE="${SYNTUMOR_CHECK_CACHE:-/var/cache/syntumor-docker-check}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
RUN_ID="syntumor-check-$$"
SEGMENT_TIMEOUT_S="${SYNTUMOR_CHECK_SEGMENT_TIMEOUT_S:-900}"
export DOCKER_BUILDKIT=0 # the classic builder: no buildx plugin needed (Debian has none)

started_at=$(date +%s)
step() { printf '[docker-check %4ss] %s\n' "$(($(date +%s) - started_at))" "$*"; }
fail() {
    echo "docker-check: $*" >&2
    exit 1
}

# --- Debian packages --------------------------------------------------------------------------
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if [ -z "${SYNTUMOR_CHECK_BASE_IMAGE:-}" ]; then
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        fail "needs the Debian packages ${missing[*]}: sudo apt-get install -y ${missing[*]}"
    fi
    step "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$CACHE"

# --- clean-up, whatever happens -----------------------------------------------------------------
DOCKERD_PID=""
SERVER_PID=""
WORK="$(mktemp -d /tmp/syntumor-docker-check.XXXXXX)"
cleanup() {
    local status=$?
    if docker info >/dev/null 2>&1; then
        docker rm -f "$RUN_ID" >/dev/null 2>&1 || true
        docker volume rm -f "$RUN_ID" >/dev/null 2>&1 || true
    fi
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# --- the Docker engine --------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" -eq 0 ] || fail "no Docker engine answers, and only root may start dockerd here"
    step "starting dockerd (log: $CACHE/dockerd.log)"
    setsid dockerd >"$CACHE/dockerd.log" 2>&1 </dev/null &
    DOCKERD_PID=$!
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || fail "dockerd exited: $(tail -n 20 "$CACHE/dockerd.log")"
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not answer in 60 s: $(tail -n 20 "$CACHE/dockerd.log")"
fi
step "Docker engine $(docker version --format '{{.Server.Version}}')"

# --- the base image: Debian from debootstrap, with this machine's trusted CA certificates --------
local_cas() { find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort; }
if [ -n "${SYNTUMOR_CHECK_BASE_IMAGE:-}" ]; then
    BASE="$SYNTUMOR_CHECK_BASE_IMAGE"
else
    # The tag names what the image holds: suite, mirror and the CA certificates.
    base_key="$( { echo "$SUITE $MIRROR v1"; local_cas | xargs -r cat; } | sha256sum | cut -c1-12)"
    BASE="syntumor-check-base:$SUITE-$base_key"
    if docker image inspect "$BASE" >/dev/null 2>&1; then
        step "base image $BASE (cached)"
    else
        tree="$CACHE/$SUITE-minbase"
        if [ ! -f "$tree/.complete" ]; then
            step "debootstrap --variant=minbase $SUITE from $MIRROR"
            rm -rf "$tree"
            debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$tree" "$MIRROR" \
                >"$CACHE/debootstrap.log" 2>&1 || fail "debootstrap failed: $(tail -n 20 "$CACHE/debootstrap.log")"
            touch "$tree/.complete"
        fi
        step "making base image $BASE"
        root="$WORK/rootfs"
        cp -a "$tree" "$root"
        rm -f "$root/.complete"
        rm -f "$root/etc/apt/sources.list"
        cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        while read -r cert; do
            [ -n "$cert" ] && cp "$cert" "$root/usr/local/share/ca-certificates/"
        done < <(local_cas)
        chroot "$root" update-ca-certificates >/dev/null 2>&1 || fail "update-ca-certificates failed"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        tar -C "$root" -c . | docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$BASE" >/dev/null
        rm -rf "$root"
    fi
fi

# --- build args: this machine's package registries ------------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$BASE")
pip_setting() { # an http(s) pip setting from the environment or pip's configuration
    local env_name="$1" key="$2" value
    value="${!env_name:-$(python3 -m pip config get "global.$key" 2>/dev/null || true)}"
    value="$(tr ' ' '\n' <<<"$value" | grep -E '^https?://' | paste -sd ' ' || true)"
    [ -z "$value" ] || build_args+=(--build-arg "$env_name=$value")
}
pip_setting PIP_INDEX_URL index-url
pip_setting PIP_EXTRA_INDEX_URL extra-index-url
npm_registry="$(npm config get registry 2>/dev/null || true)"
[ -z "$npm_registry" ] || build_args+=(--build-arg "NPM_CONFIG_REGISTRY=$npm_registry")
if [ -z "${SYNTUMOR_CHECK_BASE_IMAGE:-}" ]; then
    # The base image's CA bundle (with this machine's local CAs) for pip and npm too.
    build_args+=(--build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt
        --build-arg NPM_CONFIG_CAFILE=/etc/ssl/certs/ca-certificates.crt)
fi

# torch: the wheel this machine's pip finds without an index (the local CPU build), if any.
torch_version="$(sed -n 's/^torch==//p' constraints.txt)"
wheels="$CACHE/wheels"
mkdir -p "$wheels"
if ! compgen -G "$wheels/torch-$torch_version[+-]*.whl" >/dev/null; then
    python3 -m pip download --quiet --no-deps --no-index --only-binary=:all: --python-version 3.11 \
        -d "$wheels" "torch==$torch_version" >/dev/null 2>&1 || true
fi
if compgen -G "$wheels/torch-$torch_version[+-]*.whl" >/dev/null; then
    # A fixed port when free: the URL is a build arg, and a new value would miss the build cache.
    wheel_port="$(python3 -c '
import socket, sys
for port in [int(sys.argv[1]) + i for i in range(50)] + [0]:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            print(s.getsockname()[1])
            break
    except OSError:
        pass
' "${SYNTUMOR_CHECK_WHEEL_PORT:-38517}")"
    python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$wheel_port" \
        >"$CACHE/wheel-server.log" 2>&1 &
    SERVER_PID=$!
    build_args+=(--build-arg TORCH_INDEX_URL= --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$wheel_port/")
    step "torch $(basename "$(compgen -G "$wheels/torch-$torch_version[+-]*.whl" | head -n 1)") served to the build"
else
    step "no local torch $torch_version wheel: the build takes torch from TORCH_INDEX_URL"
fi

# --- build ------------------------------------------------------------------------------------------
step "docker build -t $IMAGE (log: $CACHE/build.log)"
build_started=$(date +%s)
if ! docker build --network host "${build_args[@]}" -t "$IMAGE" . >"$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    fail "docker build failed (whole log: $CACHE/build.log)"
fi
step "built $IMAGE in $(($(date +%s) - build_started)) s: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"

# --- run on a fresh volume and use it -------------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
docker volume create "$RUN_ID" >/dev/null
docker run -d --name "$RUN_ID" -p "127.0.0.1:$port:8000" -v "$RUN_ID:/data" "$IMAGE" >/dev/null
step "container $RUN_ID on 127.0.0.1:$port (volume $RUN_ID)"
admin="$(docker exec "$RUN_ID" syntumor users create-admin --username admin --generate)" ||
    fail "users create-admin failed"
password="${admin##* }"
docker exec "$RUN_ID" syntumor phantom --seed 3 --shape 96,80,48 --spacing 2.5 \
    --out-image /tmp/phantom_ct.nii.gz >"$WORK/phantom.log" 2>&1 ||
    fail "syntumor phantom failed: $(cat "$WORK/phantom.log")"
docker exec "$RUN_ID" cat /tmp/phantom_ct.nii.gz >"$WORK/phantom_ct.nii.gz"
if ! python3 scripts/docker-smoke.py --url "http://127.0.0.1:$port" --username admin \
    --password "$password" --image "$WORK/phantom_ct.nii.gz" --timeout "$SEGMENT_TIMEOUT_S"; then
    echo "--- container log ---" >&2
    docker logs --tail 60 "$RUN_ID" >&2 || true
    fail "the image did not pass its checks"
fi
docker inspect --format 'health: {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$RUN_ID"
step "docker-check passed"
