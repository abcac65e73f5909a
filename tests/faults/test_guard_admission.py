"""The guard's admission, real, in front of a slow upstream (a stand-in for a busy TorchServe: a real one's
queue cannot be filled on purpose in a unit-sized test; test_overload.py does that with a real TorchServe).

A burst beyond admission: the upstream never holds more than the limit, the requests beyond it wait their turn
and are answered, those that cannot get a place within the wait get our 503 with Retry-After after the wait,
not at once, and a health check never waits behind predictions."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from resnet_serving.torchserve.guard import Admission, Guard
from tests.fixtures.http_server import CannedHandler, canned_server
from tests.helpers import free_port

HOLD_S = 0.3


class SlowUpstream(CannedHandler):
    """Answers each prediction after HOLD_S, counting how many it holds at once."""

    lock = threading.Lock()
    inside = 0
    most = 0

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        if method != "POST":
            return 200, b'{"status": "Healthy"}'
        cls = type(self)
        with cls.lock:
            cls.inside += 1
            cls.most = max(cls.most, cls.inside)
        time.sleep(HOLD_S)
        with cls.lock:
            cls.inside -= 1
        return 200, b'{"predictions": []}'


@pytest.fixture
def guard_and_upstream() -> Iterator[tuple[Guard, type[SlowUpstream]]]:
    SlowUpstream.inside = SlowUpstream.most = 0
    with canned_server(SlowUpstream) as upstream:
        g = Guard(
            host="127.0.0.1",
            port=free_port(),
            upstream=upstream,
            retry_after=1,
            model="resnet50",
            max_body=1 << 20,
            timeout=30,
            admission=Admission(limit=2, wait=4 * HOLD_S),
        )
        g.start()
        try:
            yield g, SlowUpstream
        finally:
            g.stop()


def _post(url: str) -> tuple[int, float, str | None]:
    t0 = time.monotonic()
    r = requests.post(f"{url}/predictions/resnet50", data=b"x" * 1000, timeout=30)
    return r.status_code, time.monotonic() - t0, r.headers.get("Retry-After")


def test_a_burst_beyond_admission_waits_its_turn_and_the_rest_is_refused_after_the_wait(
    guard_and_upstream: tuple[Guard, type[SlowUpstream]],
) -> None:
    guard, upstream = guard_and_upstream
    n = 16  # 2 inside, 14 waiting: within a wait of 4 holds, about 8 more get a place
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: _post(guard.url), range(n)))
    statuses = sorted(s for s, _, _ in results)
    ok = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert upstream.most <= 2, f"the upstream held {upstream.most} at once; admission allows 2"
    assert len(ok) > 2, "requests beyond the limit waited and were answered"
    assert refused, "16 requests cannot all get a place within the wait"
    for _status, waited, retry_after in refused:
        assert retry_after == "1"
        assert waited >= 4 * HOLD_S * 0.9, f"a refusal came after {waited:.2f}s, before the wait ran out"
    assert guard.admission is not None and (guard.admission.inside, guard.admission.waiting) == (0, 0)


def test_a_health_check_does_not_wait_behind_predictions(
    guard_and_upstream: tuple[Guard, type[SlowUpstream]],
) -> None:
    guard, _ = guard_and_upstream
    with ThreadPoolExecutor(6) as pool:
        busy = [pool.submit(_post, guard.url) for _ in range(6)]
        time.sleep(HOLD_S / 3)
        t0 = time.monotonic()
        r = requests.get(f"{guard.url}/ping", timeout=30)
        took = time.monotonic() - t0
        for f in busy:
            f.result()
    assert r.status_code == 200
    assert took < 4 * HOLD_S, f"/ping took {took:.2f}s: it waited behind the predictions"


def test_a_client_trickling_its_body_holds_no_place(guard_and_upstream: tuple[Guard, type[SlowUpstream]]) -> None:
    """Admission comes once the body is in: two clients that send their headers and then nothing do not keep
    the two places of TorchServe from the others."""
    guard, _ = guard_and_upstream
    head = b"POST /predictions/resnet50 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
    stalled = [socket.create_connection(("127.0.0.1", guard.port), timeout=10) for _ in range(2)]
    try:
        for s in stalled:
            s.sendall(head + b"x" * 10)
        time.sleep(0.1)
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: _post(guard.url), range(2)))
    finally:
        for s in stalled:
            s.close()
    assert [status for status, _, _ in results] == [200, 200]
    assert all(took < 2 * HOLD_S + 1 for _, took, _ in results), results
