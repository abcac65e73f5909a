#!/usr/bin/env bash
# Make the local base image for docker/Dockerfile.* where no image can be pulled: Debian bookworm from
# debootstrap, with Debian's Python 3.11 (venv, pip) standing in for the official Python image, imported with
# `docker import`. Once per machine: an existing image of that name is kept (FORCE=1 makes it again).
#
#   docker/base/make-base.sh [IMAGE]        default IMAGE: resnet-serving-base/python:3.11.2-bookworm
#
# The Debian mirror is the one this host's apt uses (its sources), so nothing here names a host. Needs root
# (debootstrap) and a running Docker engine.
set -euo pipefail

IMAGE=${1:-resnet-serving-base/python:3.11.2-bookworm}
DOCKER=${DOCKER:-docker}
SUITE=bookworm

step() { echo "make-base: $*" >&2; }
fail() { echo "make-base: error: $*" >&2; exit 1; }

if [ "${FORCE:-0}" != 1 ] && $DOCKER image inspect "$IMAGE" >/dev/null 2>&1; then
  step "$IMAGE exists (FORCE=1 makes it again)"
  exit 0
fi
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || fail "debootstrap needs root"
$DOCKER info >/dev/null 2>&1 || fail "no Docker engine answers ($DOCKER info failed): start dockerd first"

# The host's Debian mirror: the first URI of its deb822 sources, else of sources.list.
MIRROR=${DEBIAN_MIRROR:-$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}'; } ||
  true
)}
[ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || fail "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list (set DEBIAN_MIRROR)"

root=$(mktemp -d /var/tmp/resnet-serving-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
step "debootstrap $SUITE (minbase, with python3.11, venv and CA certificates) from the host's mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; fail "debootstrap failed (log above)"; }
rm -f "$root.log"
step "trimming apt lists and caches"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
step "docker import → $IMAGE"
tar -C "$root" -c . | $DOCKER import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null || fail "docker import failed"
step "made $IMAGE ($($DOCKER image inspect -f '{{.Size}}' "$IMAGE") bytes)"
