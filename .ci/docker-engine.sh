#!/usr/bin/env bash
# A Docker engine for the image tests, on a CI machine that has none running: Debian's docker.io (with
# debootstrap, which docker/base/make-base.sh needs, and docker-registry, the registry the tests push to), then
# dockerd as root with its own pid file.
#
#   .ci/docker-engine.sh start    install if needed, start dockerd, wait until `docker info` answers
#   .ci/docker-engine.sh stop     stop the dockerd that `start` started (and nothing else)
set -euo pipefail
PIDFILE=${DOCKERD_PIDFILE:-/tmp/resnet-serving-ci-dockerd.pid}
LOG=${DOCKERD_LOG:-/tmp/resnet-serving-ci-dockerd.log}

say() { echo "ci docker: $*" >&2; }

case ${1:-} in
  start)
    if docker info >/dev/null 2>&1; then say "an engine already answers; nothing started"; exit 0; fi
    [ "$(id -u)" = 0 ] || { say "not root: cannot install or start dockerd"; exit 1; }
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || ! command -v docker-registry >/dev/null
    then
      say "installing docker.io, debootstrap and docker-registry (apt)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q docker.io debootstrap docker-registry >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q docker.io debootstrap docker-registry >/dev/null; } ||
        { say "apt-get install docker.io debootstrap docker-registry failed"; exit 1; }
    fi
    say "starting dockerd (log: $LOG)"
    dockerd --pidfile "$PIDFILE" >"$LOG" 2>&1 &
    for _ in $(seq 60); do
      if docker info >/dev/null 2>&1; then say "engine up: $(docker version -f '{{.Server.Version}}')"; exit 0; fi
      sleep 1
    done
    say "dockerd did not answer within 60 s; its log:"; tail -20 "$LOG" >&2; exit 1
    ;;
  stop)
    [ -f "$PIDFILE" ] || { say "no dockerd of ours to stop"; exit 0; }
    pid=$(cat "$PIDFILE")
    say "stopping dockerd $pid"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
    say "dockerd $pid did not stop within 30 s"; exit 1
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
