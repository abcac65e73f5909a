"""`resnet-serving serve` as a process: starts TorchServe, prints a working curl line, and SIGTERM stops the
whole tree (launcher, Java front end, Python workers) with nothing left behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from tests.fixtures import images as fx
from tests.helpers import REPO, serve_command, wait_until_serving

pytestmark = pytest.mark.torchserve


def test_serve_sigterm_leaves_no_orphans(archive_dir: Path, tmp_path: Path) -> None:
    serve = serve_command(archive_dir)
    cmd, port = serve.argv, serve.port
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(proc, log)
        text = log.read_text(errors="replace")
        ready_s = float(re.search(r"ready in ([0-9.]+)s", text).group(1))  # type: ignore[union-attr]
        assert 0 < ready_s < 300
        assert f"http://127.0.0.1:{port}" in text
        r = requests.post(
            f"http://127.0.0.1:{port}/predictions/resnet50",
            data=fx.PHOTO.read_bytes(),
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["version"] == "1"
        # metrics are Prometheus text on the metrics port; the management API answers only on loopback
        metrics = requests.get(f"http://127.0.0.1:{serve.metrics_port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "ts_inference_requests_total" in metrics.text
        tree = psutil.Process(proc.pid).children(recursive=True)
        names = {p.name() for p in tree}
        assert "java" in names, names
        assert any("model_service_worker" in " ".join(p.cmdline()) for p in tree)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 0, log.read_text(errors="replace")[-2000:]
    _gone, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, f"orphans: {[(p.pid, p.name()) for p in alive]}"
    assert "stopping TorchServe" in log.read_text(errors="replace")


def test_serve_refuses_tampered_archive(archive_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model"
    bad.mkdir()
    data = bytearray((archive_dir / ARCHIVE_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / ARCHIVE_NAME).write_bytes(bytes(data))
    (bad / MANIFEST_NAME).write_bytes((archive_dir / MANIFEST_NAME).read_bytes())
    r = subprocess.run(
        [sys.executable, "-m", "resnet_serving", "serve", "--model-dir", str(bad)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert "sha256" in r.stderr and "so refusing resnet50 v" in r.stderr
