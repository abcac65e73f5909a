"""A real serve (guard in front of TorchServe) answers every prediction, good or refused, with an
``X-Request-Id`` header equal to the body's ``request_id``: clients and log pipelines read the header."""

from __future__ import annotations

import pytest
import requests

from tests.fixtures import images as fx
from tests.fixtures.serving import LoggedServe

pytestmark = pytest.mark.torchserve


def test_a_prediction_echoes_the_callers_id_as_a_header(logged_serve: LoggedServe) -> None:
    r = requests.post(
        f"{logged_serve.url}/predictions/resnet50",
        data=fx.PHOTO.read_bytes(),
        headers={"Content-Type": "image/jpeg", "X-Request-Id": "it-req-1"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == "it-req-1" == r.json()["request_id"]


def test_without_an_id_header_and_body_name_the_same_request(logged_serve: LoggedServe) -> None:
    r = requests.post(
        f"{logged_serve.url}/predictions/resnet50",
        data=fx.PHOTO.read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == r.json()["request_id"]


def test_a_refused_image_carries_the_id_too(logged_serve: LoggedServe) -> None:
    r = requests.post(
        f"{logged_serve.url}/predictions/resnet50",
        data=b"not an image",
        headers={"Content-Type": "image/jpeg", "X-Request-Id": "it-req-2"},
        timeout=120,
    )
    assert r.status_code == 400, r.text
    assert r.headers["X-Request-Id"] == "it-req-2" == r.json()["request_id"]
