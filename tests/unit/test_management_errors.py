"""How the management client reports TorchServe's error answers.

A loopback HTTP server stands in for TorchServe here because the bodies under test are the ones TorchServe 0.12
sends when a Java exception escapes (e.g. unregistering while a batch is in flight), which a real TorchServe does
not produce on demand. The normal answers are covered against the real TorchServe in tests/integration.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from resnet_serving.errors import ManagementError
from resnet_serving.torchserve.management import ManagementClient
from tests.fixtures.http_server import CannedHandler, canned_server

BODIES: dict[str, tuple[int, bytes]] = {
    "/models/a/1": (
        404,
        json.dumps({"code": 404, "type": "ModelNotFoundException", "message": "Model not found: a"}).encode(),
    ),
    "/models/b/1": (500, json.dumps({"code": 500, "type": "ConcurrentModificationException"}).encode()),
    "/models/c/1": (502, b"<html>bad gateway</html>\n"),
}


class _TorchServeErrors(CannedHandler):
    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        return BODIES[path]


@pytest.fixture
def client() -> Iterator[ManagementClient]:
    with canned_server(_TorchServeErrors) as url:
        c = ManagementClient(url)
        try:
            yield c
        finally:
            c.session.close()


@pytest.mark.parametrize(
    ("model", "status", "says"),
    [
        ("a", 404, "DELETE /models/a/1 → HTTP 404: Model not found: a"),
        ("b", 500, "DELETE /models/b/1 → HTTP 500: ConcurrentModificationException"),
        ("c", 502, "DELETE /models/c/1 → HTTP 502: <html>bad gateway</html>"),
    ],
)
def test_error_answers_keep_status_and_say_what_failed(
    client: ManagementClient, model: str, status: int, says: str
) -> None:
    with pytest.raises(ManagementError) as err:
        client.unregister(model, "1", timeout=5)
    assert err.value.status == status and not err.value.unreachable
    assert str(err.value) == says
