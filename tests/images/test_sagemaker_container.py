"""The serving image's SageMaker contract, run locally: ``docker/entrypoint.sh serve`` over a directory laid out
as SageMaker lays out ``model.tar.gz`` in ``/opt/ml/model``, with a real TorchServe behind it.

No Docker engine runs here, so the entrypoint script runs directly (``SM_MODEL_DIR`` stands in for
``/opt/ml/model``, and ``--host 127.0.0.1`` keeps the test on loopback). Everything behind it is real: the
tarball that ``sagemaker deploy`` uploads, the sha256 check, TorchServe, the handler.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from resnet_serving.settings import SAGEMAKER_PAYLOAD_LIMITS
from tests.fixtures import images as fx
from tests.helpers import REPO, free_ports, serve_command, wait_until_serving
from tests.helpers.sagemaker_model import sagemaker_model_dir

pytestmark = pytest.mark.torchserve

ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def start(model_dir: Path, tmp: Path, mode: str = "realtime") -> Container:
    port, mport, xport, gport, gmport, oport = free_ports(6)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "RESNET_SERVING_SAGEMAKER_MODE": mode,
    }
    log = tmp / "container.log"
    flags = [
        "--host", "127.0.0.1", "--management-port", str(mport), "--metrics-port", str(xport),
        "--grpc-inference-port", str(gport), "--grpc-management-port", str(gmport),
        "--model-metrics-port", str(oport),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT), "serve", *flags], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Container(proc, f"http://127.0.0.1:{port}", log)


def wait_ready(c: Container) -> None:
    wait_until_serving(c.proc, c.log)


def stop(c: Container) -> None:
    if c.proc.poll() is None:
        c.proc.send_signal(signal.SIGTERM)
        c.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def container(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    tmp = tmp_path_factory.mktemp("sagemaker")
    c = start(sagemaker_model_dir(archive_dir, tmp / "model"), tmp)
    try:
        wait_ready(c)
        yield c
    finally:
        stop(c)


def invoke(c: Container, body: bytes, content_type: str) -> requests.Response:
    return requests.post(f"{c.url}/invocations", data=body, headers={"Content-Type": content_type}, timeout=60)


def test_ping_and_invocations_answer_on_the_bind_port(container: Container) -> None:
    assert requests.get(f"{container.url}/ping", timeout=10).status_code == 200
    r = invoke(container, fx.PHOTO.read_bytes(), "image/jpeg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "resnet50" and body["version"] == "1"
    scores = [p["score"] for p in body["predictions"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def test_json_form_with_several_images(container: Container) -> None:
    b64 = base64.b64encode(fx.PHOTO.read_bytes()).decode()
    r = requests.post(f"{container.url}/invocations", json={"images": [b64, b64], "topk": 2}, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 2 and all(len(x["predictions"]) == 2 for x in results)


def test_predictions_equal_those_of_serve_for_the_same_archive(
    container: Container, archive_dir: Path, tmp_path: Path
) -> None:
    """The same archive through plain `resnet-serving serve` (same defaults, no SageMaker mode) answers the same
    bytes: SageMaker mode changes limits and paths, never the numbers."""
    command = serve_command(archive_dir)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command.argv, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    serve = Container(proc, f"http://127.0.0.1:{command.port}", log)
    try:
        wait_ready(serve)
        photo = fx.PHOTO.read_bytes()
        for i in range(2):
            # the same request id to both, so the whole bodies must match (each echoes it as request_id)
            headers = {"Content-Type": "image/jpeg", "X-Request-Id": f"same-{i}"}
            ours = requests.post(f"{container.url}/invocations", data=photo, headers=headers, timeout=60).json()
            served = requests.post(f"{serve.url}/predictions/resnet50", data=photo, headers=headers, timeout=60).json()
            assert ours == served
    finally:
        stop(serve)


def test_a_body_above_the_realtime_limit_gets_413_and_the_next_request_is_served(container: Container) -> None:
    limit = SAGEMAKER_PAYLOAD_LIMITS["realtime"]
    big = fx.PHOTO.read_bytes() + b"\0" * (7 * 1024 * 1024)
    assert len(big) > limit
    r = invoke(container, big, "image/jpeg")
    assert r.status_code == 413, r.text
    err = r.json()
    assert err["error"] == "payload_too_large" and str(limit) in err["message"] and "realtime" in err["message"]
    b64 = base64.b64encode(big).decode()
    r = requests.post(f"{container.url}/invocations", json={"images": [b64]}, timeout=60)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert invoke(container, fx.PHOTO.read_bytes(), "image/jpeg").status_code == 200


def test_a_tampered_archive_is_refused_at_start(archive_dir: Path, tmp_path: Path) -> None:
    c = start(sagemaker_model_dir(archive_dir, tmp_path / "model", tamper=True), tmp_path)
    try:
        rc = c.proc.wait(timeout=120)
    finally:
        stop(c)
    text = c.log.read_text(errors="replace")
    assert rc == 1, text[-2000:]
    assert "sha256" in text and "so refusing resnet50 v1" in text and "Traceback" not in text


def test_sigterm_stops_everything_inside_the_30_seconds_before_sigkill(archive_dir: Path, tmp_path: Path) -> None:
    c = start(sagemaker_model_dir(archive_dir, tmp_path / "model"), tmp_path)
    try:
        wait_ready(c)
        tree = psutil.Process(c.proc.pid).children(recursive=True)
        t0 = time.monotonic()
        c.proc.send_signal(signal.SIGTERM)
        rc = c.proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        stop(c)
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    assert rc == 0 and took < 30 and not alive, (rc, took, [p.pid for p in alive])
