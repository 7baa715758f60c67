# One image for training (`harness execute`) and verification (`harness verify`).
# Build it with `harness image build` (docs/docker.md): the build context is the project
# filtered by .dockerignore plus the chosen wheelhouse under wheelhouse/, and the build needs
# no network: Python packages are installed offline, hash-checked, from that wheelhouse.
#
# BASE_IMAGE must be a Debian bookworm image with Python 3.11 and its venv module, named by
# digest. The default is Docker Hub's python:3.11-slim-bookworm pinned by digest (pull it once
# with `docker pull`; builds never pull). Machines without a registry build a local one with
# docker/build-base.sh (debootstrap + docker import) and pass it with --base-image.
ARG BASE_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE_IMAGE} AS python-base
SHELL ["/bin/sh", "-eu", "-c"]
# Fail early and clearly on a base without the interpreter the locks were made for.
RUN python3 -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11), sys.version'

# Dependencies only, in their own stage: the wheelhouse never becomes a layer of the final
# image, and this stage's cache survives every code change (its inputs are the lock and wheels).
FROM python-base AS dependencies
ARG VARIANT=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
COPY docker/requirements-${VARIANT}.lock /tmp/requirements.lock
COPY wheelhouse/ /wheelhouse/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links /wheelhouse --require-hashes \
      --only-binary=:all: -r /tmp/requirements.lock \
 && cp /tmp/requirements.lock /opt/venv/requirements.lock

FROM python-base
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
COPY --from=dependencies /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/harness-entrypoint
# A fixed unprivileged user; the harness runs containers as the invoking uid:gid instead, or
# as this uid when the invoker is root.
RUN groupadd --gid 10001 harness \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin harness \
 && chmod 0755 /usr/local/bin/harness-entrypoint
COPY pyproject.toml README.m[d] /src/
COPY gainakt /src/gainakt
COPY harness /src/harness
# The project itself, offline and without build isolation (setuptools comes from the lock).
RUN [ -f /src/README.md ] || : > /src/README.md; \
    /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation /src \
 && rm -rf /src/build /src/*.egg-info \
 && /opt/venv/bin/harness --help > /dev/null
# HOME and caches under /tmp: any uid can write there, also with a read-only root filesystem
# (the containers mount a tmpfs on /tmp). NVIDIA_DRIVER_CAPABILITIES asks the NVIDIA runtime
# for the CUDA libraries and nvidia-smi; which GPUs are visible is decided per container.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    HARNESS_IN_CONTAINER=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/harness-entrypoint"]
CMD ["--help"]
# Provenance last, so that a new commit only adds a label layer and reuses every other one.
ARG VARIANT=cpu
ARG GIT_COMMIT=unknown
ARG LOCK_SHA256=unknown
ARG CODE_SHA256=unknown
ARG BASE_IMAGE
ARG BASE_IMAGE_DIGEST=unknown
LABEL org.opencontainers.image.title="gainakt-harness" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_IMAGE_DIGEST}" \
      org.gainakt.harness.variant="${VARIANT}" \
      org.gainakt.harness.lock-sha256="${LOCK_SHA256}" \
      org.gainakt.harness.code-sha256="${CODE_SHA256}"
