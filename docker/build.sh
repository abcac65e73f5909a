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
command -v "${DOCKER:-docker}" >/dev/null || fail "no docker client on PATH"
"${DOCKER:-docker}" info >/dev/null 2>&1 || fail "no Docker engine answers (docker info failed): start dockerd, or see docker/README.md"
BUILD=$(pick_docker) || fail "no docker client here drives BuildKit: install the buildx plugin (or Debian's docker.io client)"

DOCKER=${DOCKER:-docker} bash docker/base/make-base.sh "$BASE"

# The wheelhouse: every distribution the images install, resolved by the host's pip (its indexes, its CA bundle).
mkdir -p "$WHEELHOUSE"
reqs=$(mktemp); trap 'rm -f "$reqs" "$reqs.log"' EXIT
$PYTHON - "$reqs" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
deps = list(project["project"]["dependencies"])
for extra in ("serve", "operator"):
    deps += project["project"]["optional-dependencies"][extra]
deps += project["build-system"]["requires"] + ["wheel"]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
echo "images: filling $WHEELHOUSE with what the images install (host pip; cached)" >&2
if ! $PYTHON -m pip download --quiet --dest "$WHEELHOUSE" -r "$reqs" 2>"$reqs.log"; then
  grep -v "^WARNING: Location" "$reqs.log" >&2
  fail "pip download into $WHEELHOUSE failed (its output above)"
fi

port=$($PYTHON -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PYTHON -m http.server --bind 127.0.0.1 --directory "$WHEELHOUSE" "$port" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$reqs" "$reqs.log"' EXIT
for _ in $(seq 50); do $PYTHON -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" 2>/dev/null && break; sleep 0.1; done

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
