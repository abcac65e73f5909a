"""The guard names every answer with ``X-Request-Id``, the same id the handler writes into the body and the
request log, and on SageMaker it reads what the front door sends: X-TopK as the custom attributes, X-Request-Id
as the inference id. A canned upstream records what reaches it and answers as TorchServe 0.12 does: with its
own ``x-request-id`` header and, in the body, the id the handler saw."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import ClassVar

import pytest
import requests

from resnet_serving.torchserve.guard import Guard
from tests.fixtures.http_server import CannedHandler, canned_server
from tests.helpers import free_port


class Recorder(CannedHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        headers = {k.lower(): v for k, v in self.headers.items()}
        Recorder.seen.append(headers)
        if path == "/full":
            return 503, b'{"code": 503}'
        return 200, json.dumps({"predictions": [], "request_id": headers.get("x-request-id", "none")}).encode()

    def extra_headers(self, status: int) -> dict[str, str]:
        return {"x-request-id": "torchserve-own-id"}


def _guard(upstream: str, *, sagemaker: bool = False) -> Guard:
    return Guard(
        host="127.0.0.1",
        port=free_port(),
        upstream=upstream,
        retry_after=1,
        model="resnet50",
        max_body=1024,
        timeout=10,
        **({"sagemaker": True} if sagemaker else {}),
    )


@pytest.fixture
def guard() -> Iterator[Guard]:
    Recorder.seen.clear()
    with canned_server(Recorder) as upstream:
        g = _guard(upstream)
        g.start()
        try:
            yield g
        finally:
            g.stop()


def test_the_callers_id_is_forwarded_and_echoed_as_a_header(guard: Guard) -> None:
    r = requests.post(f"{guard.url}/predictions/resnet50", data=b"x", headers={"X-Request-Id": "abc-1"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "abc-1" == r.json()["request_id"]
    assert Recorder.seen[-1]["x-request-id"] == "abc-1"


def test_without_an_id_the_guard_names_the_request_and_header_and_body_agree(guard: Guard) -> None:
    r = requests.post(f"{guard.url}/predictions/resnet50", data=b"x", timeout=10)
    rid = r.headers["X-Request-Id"]
    assert rid and rid != "torchserve-own-id" and rid == r.json()["request_id"]
    r = requests.post(f"{guard.url}/predictions/resnet50", data=b"x", headers={"X-Request-Id": "bad id;"}, timeout=10)
    assert r.headers["X-Request-Id"] not in ("bad id;", "torchserve-own-id")
    assert r.headers["X-Request-Id"] == r.json()["request_id"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/full", {}, 503),
        ("/predictions/resnet50", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("/predictions/resnet50", {f"X-Pad-{i}": "a" * 1000 for i in range(9)}, 400),
    ],
)
def test_the_guards_own_answers_carry_the_id_too(guard: Guard, path: str, headers: dict[str, str], status: int) -> None:
    r = requests.post(guard.url + path, data=b"x", headers={**headers, "X-Request-Id": "abc-2"}, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["X-Request-Id"] == "abc-2"


def _sagemaker_invocation(headers: dict[str, str]) -> tuple[dict[str, str], requests.Response]:
    """One /invocations through a guard in SageMaker mode: what the upstream saw, and the answer."""
    Recorder.seen.clear()
    with canned_server(Recorder) as upstream:
        g = _guard(upstream, sagemaker=True)
        g.start()
        try:
            r = requests.post(f"{g.url}/invocations", data=b"x", headers=headers, timeout=10)
        finally:
            g.stop()
    return Recorder.seen[-1], r


def test_on_sagemaker_the_front_doors_headers_become_topk_and_the_request_id() -> None:
    seen, r = _sagemaker_invocation(
        {"X-Amzn-SageMaker-Custom-Attributes": "3", "X-Amzn-SageMaker-Inference-Id": "abc-3"}
    )
    assert (seen["x-topk"], seen["x-request-id"]) == ("3", "abc-3")
    # SageMaker returns the container's custom attributes, and no other header, to the front door
    assert r.headers["X-Amzn-SageMaker-Custom-Attributes"] == "abc-3" == r.headers["X-Request-Id"]


def test_custom_attributes_in_sagemakers_own_form_still_work() -> None:
    seen, r = _sagemaker_invocation({"X-Amzn-SageMaker-Custom-Attributes": "topk=2, request-id=abc-4"})
    assert "x-topk" not in seen, "the handler reads topk=N from the custom attributes itself"
    assert seen["x-request-id"] == "abc-4" == r.headers["X-Request-Id"]
