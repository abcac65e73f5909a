#!/usr/bin/env bash
# `make images`: build resnet-serving and resnet-serving-operator from docker/Dockerfile.*, as a user builds
# them, where no image can be pulled and containers have no PyPI of their own. Only build arguments differ from
# a user's `docker build`:
#   PYTHON_IMAGE    the local base that docker/base/make-base.sh makes once per machine (Debian's Python 3.11)
#   PIP_NO_INDEX, PIP_FIND_LINKS
#                   a wheelhouse that the host's pip fills (.cache/wheelhouse: the torch wheels come from the
#                   host's disk, not downloaded again on every build), served on loopback to a build on the host
#                   network, so the image gets exactly the versions the host resolved
#
#   docker/build.sh [serving|operator]...     default: both
#   VERSION=0.1.0 PYTHON=.venv/bin/python DOCKER=docker
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
VERSION=${VERSION:-$($PYTHON -c 'import resnet_serving; print(resnet_serving.__version__)')}
BASE=${BASE_IMAGE:-resnet-serving-base/python:3.11.2-bookworm}
WHEELHOUSE=${WHEELHOUSE:-.cache/wheelhouse}
IMAGES=("$@"); [ ${#IMAGES[@]} -gt 0 ] || IMAGES=(serving operator)

fail() { echo "images: error: $*" >&2; exit 1; }

# A client that drives BuildKit (which reads docker/Dockerfile.NAME.dockerignore): buildx where installed,
# else a client older than 23 with DOCKER_BUILDKIT=1.
pick_docker() {
  local c
  for c in ${DOCKER:-docker} /usr/bin/docker; do
    command -v "$c" >/dev/null || continue
    if $c buildx version >/dev/null 2>&1; then echo "$c buildx build --load"; return; fi
    local major; major=$($c version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then echo "env DOCKER_BUILDKIT=1 $c build"; return; fi
  done
  return 1
}
DOCKER_CLI=${DOCKER:-docker}
command -v "${DOCKER:-docker}" >/dev/null || fail "no docker client on PATH"
"${DOCKER:-docker}" info >/dev/null 2>&1 || fail "no Docker engine answers (docker info failed): start dockerd, or see docker/README.md"
BUILD=$(pick_docker) || fail "no docker client here drives BuildKit: install the buildx plugin (or Debian's docker.io client)"

# Room for a build before it starts: the serving image's dependency layer (torch with its CUDA wheels) plus
# pip's temporary copy of the wheels while it installs them. A build that runs out fails half-way and leaves
# the disk full for whatever runs next. Exit 3 says "no room", so a caller can tell it from a broken build.
MIN_FREE_GB=${IMAGES_MIN_FREE_GB:-12}
root=$("${DOCKER:-docker}" info -f '{{.DockerRootDir}}' 2>/dev/null || true)
if [ -n "$root" ] && [ -d "$root" ]; then
  free=$(df --output=avail -B1G "$root" | tail -1 | tr -d ' ')
  if [ "$free" -lt "$MIN_FREE_GB" ]; then
    echo "images: error: $root (Docker's data root) has ${free} GB free; a build of the images needs about" \
      "${MIN_FREE_GB} GB (IMAGES_MIN_FREE_GB). Free some (docker image prune, docker builder prune) and retry." >&2
    exit 3
  fi
fi

# One build at a time per checkout: a second would fight the first for the wheelhouse server and the tags.
mkdir -p .cache
exec 9>.cache/images.lock
if ! flock -n 9; then
  echo "images: another build of this checkout is running; waiting for it" >&2
  flock 9
fi

DOCKER=${DOCKER:-docker} bash docker/base/make-base.sh "$BASE"

# The wheelhouse: every distribution the images install, resolved by the host's pip (its indexes, its CA bundle).
mkdir -p "$WHEELHOUSE"
reqs=$(mktemp); trap 'rm -f "$reqs" "$reqs.log" "$reqs.json" "$reqs.remote"' EXIT
$PYTHON - "$reqs" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
deps = list(project["project"]["dependencies"])
for extra in ("serve", "operator"):
    deps += project["project"]["optional-dependencies"][extra]
deps += project["build-system"]["requires"] + ["wheel"]
# the SBOM step's tool, at the version the Dockerfile pins
deps += ["cyclonedx-bom==" + re.search(r"^ARG CYCLONEDX_BOM_VERSION=(\S+)", open("docker/Dockerfile.serving").read(), re.M)[1]]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
# Files that pip finds on this machine's own disk (a local index or find-links) are linked, not copied: the
# torch wheels alone are gigabytes, and a copy would need that much more room. Others are downloaded once.
echo "images: filling $WHEELHOUSE with what the images install (host pip; cached)" >&2
if ! $PYTHON -m pip install --dry-run --ignore-installed --quiet --report "$reqs.json" -r "$reqs" 2>"$reqs.log"; then
  grep -v "^WARNING: Location" "$reqs.log" >&2
  fail "pip could not resolve what the images install (its output above)"
fi
$PYTHON - "$reqs.json" "$WHEELHOUSE" >"$reqs.remote" <<'PY'
import json, os, sys
from pathlib import Path
from urllib.parse import unquote, urlparse

wheelhouse = Path(sys.argv[2])
for item in json.load(open(sys.argv[1]))["install"]:
    url = urlparse(item["download_info"]["url"])
    target = wheelhouse / unquote(os.path.basename(url.path))
    if target.exists():
        continue
    if url.scheme == "file":
        target.symlink_to(unquote(url.path))
    else:
        print(item["download_info"]["url"])
PY
if [ -s "$reqs.remote" ] && ! $PYTHON -m pip download --quiet --no-deps --dest "$WHEELHOUSE" -r "$reqs.remote" 2>"$reqs.log"; then
  grep -v "^WARNING: Location" "$reqs.log" >&2
  fail "pip download into $WHEELHOUSE failed (its output above)"
fi

# The wheelhouse URL is a build argument, and a build argument is part of every RUN's cache key: the port must
# not change between builds, or each build reinstalls everything. One port per checkout, random only if taken.
port=$($PYTHON - "$PWD" <<'PY'
import socket, sys, zlib
for port in (20000 + zlib.crc32(sys.argv[1].encode()) % 20000, 0):
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            print(s.getsockname()[1])
            break
    except OSError:
        continue
PY
)
$PYTHON -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$reqs" "$reqs.log" "$reqs.json" "$reqs.remote"' EXIT
for _ in $(seq 50); do $PYTHON -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break; sleep 0.1; done
kill -0 $server 2>/dev/null || fail "the wheelhouse server could not listen on 127.0.0.1:$port"

REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE=$(git config --get remote.origin.url 2>/dev/null || echo unknown)
for name in "${IMAGES[@]}"; do
  case $name in
    serving) tag=resnet-serving:$VERSION ;;
    operator) tag=resnet-serving-operator:$VERSION ;;
    *) fail "unknown image $name (serving or operator)" ;;
  esac
  echo "images: building $tag from docker/Dockerfile.$name" >&2
  $BUILD --network host -f "docker/Dockerfile.$name" -t "$tag" \
    --build-arg "PYTHON_IMAGE=$BASE" \
    --build-arg PIP_NO_INDEX=1 \
    --build-arg "PIP_FIND_LINKS=http://127.0.0.1:$port/" \
    --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" \
    --build-arg "SOURCE=$SOURCE" \
    . || fail "docker build of $tag failed (output above)"
  echo "images: built $tag" >&2
done

# The images these replaced, now untagged: each holds its own multi-gigabyte dependency layer when
# pyproject.toml changed. Only ours (by their title label); anything else on the engine is left alone.
for title in resnet-serving resnet-serving-operator; do
  $DOCKER_CLI image prune -f --filter "label=org.opencontainers.image.title=$title" >/dev/null ||
    echo "images: could not remove the untagged $title images (docker image prune); they still take disk" >&2
done
