"""A batch's images decoded on several threads (one worker with every core): the same responses, in the same
order, as decoding them in turn, and a bad image still fails only its own request. In process, no TorchServe."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.inference.service import InferenceService
from tests.fixtures import images as fx


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> InferenceService:
    return InferenceService.from_model_dir(model_dir, batch_size=2)


def with_threads(base: InferenceService, n: int) -> InferenceService:
    return InferenceService(base.classifier, base.labels, base.meta, base.settings, decode_threads=n)


def mixed_batch() -> tuple[list[dict[str, Any]], list[str]]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    items = [
        ({"body": bytearray(fx.PHOTO.read_bytes())}, "image/jpeg"),
        ({"body": bytearray(fx.jpeg(120, 90))}, "image/jpeg"),
        ({"body": bytearray(b"definitely not an image")}, "image/jpeg"),
        # several bad images in one request: the first one is named, as when decoding in turn
        ({"body": {"images": [b64(fx.jpeg(64, 200)), "aGVsbG8=", b64(b"GIF89a broken")]}}, "application/json"),
        ({"body": {"images": [b64(fx.png(300, 40)), b64(fx.jpeg(50, 50))], "topk": 3}}, "application/json"),
        ({"body": bytearray(fx.png_huge_header(50_000, 50_000))}, "image/png"),
        ({"body": bytearray(fx.jpeg(90, 120))}, "text/plain"),
        ({"body": bytearray(fx.jpeg_with_orientation(6, 80, 40))}, "image/jpeg"),
    ]
    return [r for r, _ in items], [c for _, c in items]


def test_parallel_decode_answers_exactly_as_decoding_in_turn(loaded: InferenceService) -> None:
    requests, ctypes = mixed_batch()
    in_turn = with_threads(loaded, 1).handle(requests, ctypes)
    parallel = with_threads(loaded, 4).handle(requests, ctypes)
    assert [(r.status, r.body) for r in parallel] == [(r.status, r.body) for r in in_turn]
    assert [r.status for r in parallel] == [200, 200, 400, 400, 200, 413, 415, 200]
    assert parallel[3].body["message"].startswith("images[1]: ")
    assert len(parallel[4].body["results"]) == 2 and len(parallel[4].body["results"][0]["predictions"]) == 3
    # distinct images keep their own answers: the order of the batch survives the threads
    assert parallel[0].body["predictions"] != parallel[1].body["predictions"]


def test_a_batch_is_decoded_on_the_decode_threads_a_lone_image_inline(
    loaded: InferenceService, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = with_threads(loaded, 3)
    seen: list[str] = []
    decode = service._decode_or_defer

    def recording(raw: bytes) -> Any:
        seen.append(threading.current_thread().name)
        return decode(raw)

    monkeypatch.setattr(service, "_decode_or_defer", recording)
    photo = bytearray(fx.PHOTO.read_bytes())
    assert [r.status for r in service.handle([{"body": photo}] * 4, ["image/jpeg"] * 4)] == [200] * 4
    assert len(seen) == 4 and all(name.startswith("decode") for name in seen)
    seen.clear()
    assert service.handle([{"body": photo}], ["image/jpeg"])[0].status == 200
    assert seen == [threading.current_thread().name]


def test_one_decode_thread_means_no_pool(loaded: InferenceService) -> None:
    assert with_threads(loaded, 1)._pool is None
    assert with_threads(loaded, 0).decode_threads == 1
