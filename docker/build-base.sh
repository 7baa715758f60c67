#!/usr/bin/env bash
# Builds the local base image: a minimal Debian bookworm root filesystem made by debootstrap
# (with Python 3.11 and its venv module) imported as a Docker image. It stands in for a
# registry base image on machines that reach no registry; `harness image build` records its
# image ID as the base image digest.
#   usage: docker/build-base.sh [TAG] [MIRROR]
set -euo pipefail
TAG=${1:-gainakt-harness-base:bookworm}
MIRROR=${2:-${DEBIAN_MIRROR:-http://deb.debian.org/debian}}
SUITE=bookworm
work=$(mktemp -d /var/tmp/harness-base.XXXXXX)
trap 'rm -rf "$work"' EXIT

# minbase: essential packages and apt only; python3-venv brings ensurepip (pip for the venv).
# --cache-dir keeps the downloaded packages, so a rebuild on the same machine downloads nothing.
CACHE=${DEBOOTSTRAP_CACHE:-/var/cache/harness-debootstrap}
mkdir -p "$CACHE"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates --cache-dir="$CACHE" \
  "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  echo "build-base: debootstrap failed; last lines of its log:" >&2
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}
# Trim what an image never needs: package lists and caches, docs, locales.
chroot "$work/rootfs" apt-get clean
rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/"* \
  "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/locale/"*
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$work/rootfs/etc/apt/sources.list"

tar --numeric-owner -C "$work/rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap --variant=minbase $SUITE from $MIRROR" \
  - "$TAG" >/dev/null
echo "build-base: $TAG = $(docker image inspect --format '{{.Id}}' "$TAG")"
