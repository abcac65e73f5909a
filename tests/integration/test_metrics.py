"""A real `resnet-serving serve` (TorchServe, two workers) under a short load: our /metrics port has every
resnet_serving_* series with the archive's real version, the counts match what was sent, and X-Request-Id
is echoed or made."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures import images as fx
from tests.helpers import ServeCommand, running_serve, serve_command

pytestmark = pytest.mark.torchserve

V = {"model": "resnet50", "version": "1"}


@dataclass
class Serve:
    cmd: ServeCommand
    log: Path

    @property
    def predict_url(self) -> str:
        return f"http://127.0.0.1:{self.cmd.port}/predictions/resnet50"

    def scrape(self) -> str:
        r = requests.get(f"http://127.0.0.1:{self.cmd.model_metrics_port}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        return r.text


@pytest.fixture(scope="module")
def serve(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("serve-metrics")
    cmd = serve_command(archive_dir)
    argv = [*cmd.argv, "--workers", "2", "--threads", "1", "--max-batch-delay-ms", "50", "--run-dir", str(tmp / "run")]
    log = tmp / "serve.log"
    with running_serve(argv, log):
        yield Serve(cmd, log)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    return sum(v for n, lab, v in samples(text) if n == name and labels.items() <= lab.items())


def test_every_series_under_load_with_the_real_version(serve: Serve) -> None:
    before = serve.scrape()
    good, bad = fx.jpeg(160, 120), b"not an image at all"
    plan = [("image/jpeg", good)] * 30 + [("image/jpeg", bad)] * 4 + [("text/plain", good)] * 2
    saturation: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            text = serve.scrape()
            saturation.append(
                value(text, "resnet_serving_in_flight_requests", **V)
                + value(text, "resnet_serving_queued_requests", **V)
            )
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            statuses = list(
                pool.map(
                    lambda item: (
                        requests.post(
                            serve.predict_url, data=item[1], headers={"Content-Type": item[0]}, timeout=120
                        ).status_code
                    ),
                    plan,
                )
            )
    finally:
        done.set()
        watcher.join()
    assert statuses.count(200) == 30 and statuses.count(400) == 4 and statuses.count(415) == 2, statuses
    after = serve.scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **V, **labels) - value(before, name, **V, **labels)

    assert delta("resnet_serving_request_seconds_count", code="200") == 30
    assert delta("resnet_serving_request_seconds_count", code="400") == 4
    assert delta("resnet_serving_request_seconds_count", code="415") == 2
    assert delta("resnet_serving_errors_total", code="bad_request") == 4
    assert delta("resnet_serving_errors_total", code="unsupported_media_type") == 2
    assert delta("resnet_serving_batch_size_sum") == len(plan)
    assert 1 <= delta("resnet_serving_batch_size_count") <= len(plan)
    for stage in ("decode", "preprocess", "forward", "postprocess"):
        assert delta("resnet_serving_stage_seconds_count", stage=stage) >= 1, stage
        assert delta("resnet_serving_stage_seconds_sum", stage=stage) > 0, stage
    # histogram buckets are ours (a few ms to 10 s), not the client's defaults
    les = {lab["le"] for n, lab, _ in samples(after) if n == "resnet_serving_request_seconds_bucket"}
    assert {"0.005", "0.15", "3.0", "10.0", "+Inf"} <= les
    # saturation: something was in a worker or in TorchServe's queue while 6 clients kept it busy
    assert max(saturation) >= 1, saturation
    assert value(after, "resnet_serving_in_flight_requests", **V) == 0  # and nothing is left counted afterwards
    info = [(lab, v) for n, lab, v in samples(after) if n == "resnet_serving_model_info"]
    assert [lab["version"] for lab, _ in info] == ["1"] and info[0][1] == 1, info
    assert info[0][0]["weights"] == "random-seed-0" and info[0][0]["precision"] == "fp32"
    assert len(info[0][0]["sha256"]) == 64
    assert value(after, "resnet_serving_worker_starts_total", **V) == 2  # --workers 2, none restarted


def test_request_id_is_echoed_or_made(serve: Serve) -> None:
    """TorchServe 0.12 answers x-request-id with its own id whatever the handler sets: the caller's id comes
    back in the body; without one, the body carries TorchServe's id, the same as the header."""
    jpeg = {"Content-Type": "image/jpeg"}
    sent = requests.post(serve.predict_url, data=fx.jpeg(), headers={**jpeg, "X-Request-Id": "trace-42"}, timeout=60)
    assert sent.status_code == 200 and sent.json()["request_id"] == "trace-42"
    made = [requests.post(serve.predict_url, data=fx.jpeg(), headers=jpeg, timeout=60) for _ in range(2)]
    ids = [r.json()["request_id"] for r in made]
    assert ids == [r.headers["X-Request-Id"] for r in made] and ids[0] != ids[1], ids
    failed = requests.post(serve.predict_url, data=b"nope", headers={**jpeg, "X-Request-Id": "bad-7"}, timeout=60)
    assert failed.status_code == 400 and failed.json()["request_id"] == "bad-7"
