"""The load generator's throughput estimate against a server that answers in batches, as TorchServe does with
dynamic batching: every answer of a batch leaves at once. A canned loopback server, because the point is a
server whose batch period is known exactly; real TorchServe runs are tests/smoke/test_bench.py's."""

from __future__ import annotations

import time

from resnet_serving.bench import loadgen
from tests.fixtures.http_server import CannedHandler, canned_server

BATCH, PERIOD = 4, 0.2  # 4 answers every 0.2 s: 20 requests/s


class Batched(CannedHandler):
    """Holds each request until the next tick of a clock that releases BATCH answers every PERIOD seconds."""

    epoch = time.monotonic()

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        now = time.monotonic() - self.epoch
        time.sleep((int(now / PERIOD) + 1) * PERIOD - now)
        return 200, b'{"predictions": []}'


def test_throughput_is_the_batch_rate_whatever_the_window() -> None:
    """With BATCH clients each batch holds one request per client, so the server's rate is BATCH / PERIOD. Windows
    of 4.5, 5.5 and 6.5 periods hold a whole number of batches, so a count over them is off by up to a batch;
    the span estimate is the rate itself in each."""
    with canned_server(Batched) as url:
        for duration in (0.9, 1.1, 1.3):
            r = loadgen.run(url + "/p", b"\xff\xd8\xff", BATCH, duration=duration, warmup=0.3, timeout=10)
            assert r["failed"] == 0 and r["completed"] > 0
            assert abs(r["img_s"] - BATCH / PERIOD) <= 0.02 * BATCH / PERIOD, r
            assert r["img_s_count"] == r["completed"] / duration


def test_a_server_slower_than_the_window_is_counted() -> None:
    """A client that gets fewer than two answers inside the window has no span: the count is the throughput."""
    with canned_server(Batched) as url:
        r = loadgen.run(url + "/p", b"\xff\xd8\xff", 2, duration=0.3, warmup=0.05, timeout=10)
    assert r["img_s"] == r["img_s_count"] == r["completed"] / 0.3


class Full(CannedHandler):
    """A full server: every prediction gets a 503 that says to come back in 1 s (as serve's guard answers)."""

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        return 503, b'{"error": "overloaded"}'

    def extra_headers(self, status: int) -> dict[str, str]:
        return {"Retry-After": "1"}


class FullWithoutRetryAfter(Full):
    def extra_headers(self, status: int) -> dict[str, str]:
        return {}


def test_a_client_that_honours_retry_after_waits_and_one_that_ignores_it_resends_at_once() -> None:
    with canned_server(Full) as url:
        polite = loadgen.run(url + "/p", b"x", 2, duration=1.5, warmup=0, timeout=10, honour_retry_after=True)
        rude = loadgen.run(url + "/p", b"x", 2, duration=1.5, warmup=0, timeout=10)
    # 2 clients told to come back after 1 s send at most 2 requests each in 1.5 s; ignoring it, many more
    assert polite["failed_total"] <= 4 and polite["honour_retry_after"], polite
    assert rude["failed_total"] > 20, rude
    # both were told to come back: nothing lost
    assert polite["lost"] == rude["lost"] == 0
    assert rude["failures"] == {"HTTP 503": rude["failed"]}


def test_a_503_without_retry_after_is_lost() -> None:
    with canned_server(FullWithoutRetryAfter) as url:
        r = loadgen.run(url + "/p", b"x", 1, duration=0.5, warmup=0, timeout=10, honour_retry_after=True)
    assert r["failed_total"] > 0 and r["lost"] == r["failed_total"], r
