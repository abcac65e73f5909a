"""The Docker images under test: their tags, the docker CLI, and building them once per commit.

tests/images/conftest.py turns :func:`build_once` into the session fixture ``built``; tests/conftest.py runs every
test that uses it after all others (the builds take gigabytes of disk).
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from resnet_serving import __version__
from tests.helpers import REPO

SERVING = f"resnet-serving:{__version__}"
OPERATOR = f"resnet-serving-operator:{__version__}"
#: docker/build.sh's exit status when Docker's data root has too little free disk for a build.
NO_ROOM = 3
#: What the image tests measured, printed at the end of the run (tests/images/conftest.py), so that a plain
#: `make test` log shows it too.
FIGURES: list[str] = []


def report(line: str) -> None:
    print(f"\n{line}")
    FIGURES.append(line)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} … failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def engine() -> str | None:
    """Why the image tests cannot run here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if proc.returncode == 0 else "no Docker engine answers (docker info failed)"


def build_once() -> None:
    """The images of this commit, built by `make images` (docker/build.sh) if missing or built from another."""
    why = engine()
    if why:
        pytest.skip(f"image tests need a Docker engine: {why}; start dockerd and run `make image-test`")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    label = '{{index .Config.Labels "org.opencontainers.image.revision"}}'
    revisions = [docker("image", "inspect", "-f", label, i, check=False).stdout.strip() for i in (SERVING, OPERATOR)]
    if all(r == head for r in revisions):
        report(f"images of {head[:12]} already built")
        return
    t0 = time.monotonic()  # missing, or built from another commit
    proc = subprocess.run(["bash", "docker/build.sh"], cwd=REPO, capture_output=True, text=True, timeout=3000)
    if proc.returncode == NO_ROOM:  # checked before anything is built, so nothing is left half-done
        pytest.skip(f"image tests need disk room for the builds: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"docker/build.sh failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    report(f"built {SERVING} and {OPERATOR} of {head[:12]} with docker/build.sh in {time.monotonic() - t0:.0f} s")
