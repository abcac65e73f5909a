"""`serve --retry-after N`'s guard (resnet_serving.torchserve.guard), real, in front of a canned upstream that
answers as TorchServe 0.12 does (its queue-full 503 body, measured in test_overload.py): a canned server, because
filling a real TorchServe's queue on purpose takes a full overload run (that run is test_overload.py's, which
also checks the guard in `make faults`)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import requests

from resnet_serving.torchserve.guard import Guard
from tests.fixtures.http_server import CannedHandler, canned_server
from tests.helpers import free_port

#: TorchServe 0.12's answer to a request that finds the job queue full (status, body), as measured.
TORCHSERVE_503 = json.dumps(
    {
        "code": 503,
        "type": "ServiceUnavailableException",
        "message": 'Model "resnet50" has no worker to serve inference request. Please use scale workers API to add '
        "workers. If this is a sequence inference, please check if it is closed, or expired; or exceeds "
        "maxSequenceJobQueueSize",
    }
).encode()


class Upstream(CannedHandler):
    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        if path == "/predictions/resnet50" and method == "POST":
            return 503, TORCHSERVE_503
        if path == "/ping":
            return 200, b'{"status": "Healthy"}'
        return 400, json.dumps({"error": "bad_request", "method": method, "path": path}).encode()


@pytest.fixture
def guard() -> Iterator[Guard]:
    with canned_server(Upstream) as upstream:
        g = Guard(
            host="127.0.0.1",
            port=free_port(),
            upstream=upstream,
            retry_after=2,
            model="resnet50",
            max_body=1024,
            timeout=10,
        )
        g.start()
        try:
            yield g
        finally:
            g.stop()


def test_queue_full_503_gets_our_body_and_retry_after(guard: Guard) -> None:
    r = requests.post(f"{guard.url}/predictions/resnet50", data=b"x" * 100, timeout=10)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert r.json() == {
        "error": "overloaded",
        "message": "the resnet50 queue is full: retry after 2 s",
        "status": 503,
        "model": "resnet50",
    }


def test_everything_else_passes_through_unchanged(guard: Guard) -> None:
    r = requests.get(f"{guard.url}/ping", timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "Healthy"})
    r = requests.put(f"{guard.url}/other?x=1", data=b"abc", timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "bad_request", "method": "PUT", "path": "/other?x=1"})
    assert "Retry-After" not in r.headers


def test_a_body_above_the_cap_gets_413_without_reaching_upstream(guard: Guard) -> None:
    r = requests.post(f"{guard.url}/predictions/resnet50", data=b"x" * 2048, timeout=10)
    assert r.status_code == 413


def test_no_upstream_is_a_503_with_retry_after() -> None:
    g = Guard(
        host="127.0.0.1",
        port=free_port(),
        upstream=f"http://127.0.0.1:{free_port()}",
        retry_after=1,
        model="resnet50",
        max_body=1024,
        timeout=10,
    )
    g.start()
    try:
        r = requests.post(f"{g.url}/predictions/resnet50", data=b"x", timeout=10)
    finally:
        g.stop()
    assert (r.status_code, r.headers["Retry-After"], r.json()["error"]) == (503, "1", "overloaded")


def test_a_taken_port_is_a_config_error() -> None:
    from resnet_serving.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        g = Guard(
            host="127.0.0.1", port=port, upstream="http://127.0.0.1:1", retry_after=1, model="m", max_body=1, timeout=1
        )
        with pytest.raises(ConfigError, match=f"--port {port}"):
            g.start()


def test_headers_over_torchserves_limit_get_a_400_from_the_guard(guard: Guard) -> None:
    """TorchServe's front end drops a request whose headers pass its limit (Netty's 8 KB): the guard answers it
    400, in our error format, and never forwards it; a request just under the limit is forwarded."""
    from resnet_serving.torchserve.guard import MAX_HEADER_BYTES

    big = {f"X-Pad-{i}": "a" * 1000 for i in range(9)}
    r = requests.get(guard.url + "/ping", headers=big, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "bad_request", r.text
    assert f"the limit is {MAX_HEADER_BYTES}" in r.json()["message"]
    r = requests.get(guard.url + "/ping", headers={"X-Pad": "a" * 4000}, timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "Healthy"}, r.text


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "APPLICATION/x-www-form-urlencoded; charset=utf-8"]
)
def test_a_form_encoded_body_gets_415_from_the_guard(guard: Guard, content_type: str) -> None:
    """TorchServe's front end decodes a form-encoded body itself and answers an image sent that way with a 500: the
    guard answers 415 in the handler's words instead, and never forwards it (the upstream would answer 503)."""
    from resnet_serving.inference.protocol import form_urlencoded_refused

    r = requests.post(
        f"{guard.url}/predictions/resnet50", data=b"\xff\xd8\xff\xe0binary", headers={"Content-Type": content_type},
        timeout=10,
    )  # fmt: skip
    assert r.status_code == 415, r.text
    assert r.json() == {**form_urlencoded_refused().to_dict(), "model": "resnet50"}
    assert "Retry-After" not in r.headers
    r = requests.post(
        f"{guard.url}/predictions/resnet50", data=b"x", headers={"Content-Type": "image/jpeg"}, timeout=10
    )
    assert r.status_code == 503  # any other type is forwarded
