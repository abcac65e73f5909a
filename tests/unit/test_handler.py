"""The TorchServe handler module with a stand-in context (no TorchServe process: see tests/integration)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType

import pytest

from resnet_serving.torchserve.handler import DropPerBatchChatter
from tests.fixtures import images as fx
from tests.helpers.handler import StandInContext, body


def test_single_image(handler: ModuleType, model_dir: Path) -> None:
    req, hdr = body(bytearray(fx.PHOTO.read_bytes()), "image/jpeg")
    ctx = StandInContext(model_dir, [hdr])
    out = handler.handle([req], ctx)
    assert ctx.statuses == {}
    assert ctx.content_types == {0: "application/json"}
    assert out[0]["version"] == "7" and out[0]["weights"] == "random-seed-0"
    assert "meaningless" in out[0]["warning"]
    preds = out[0]["predictions"]
    assert len(preds) == 5 and preds == sorted(preds, key=lambda p: -p["score"])
    json.dumps(out)  # TorchServe serialises it with json.dumps


def test_one_bad_request_in_a_batch_fails_only_itself(handler: ModuleType, model_dir: Path) -> None:
    good = fx.jpeg(120, 90)
    items = [
        body(bytearray(good), "image/jpeg"),
        body(bytearray(b"definitely not an image"), "image/jpeg"),
        body({"images": [base64.b64encode(good).decode()] * 2, "topk": 2}, "application/json"),
        body(bytearray(fx.png_huge_header(50_000, 50_000)), "image/png"),
        body(bytearray(good), "text/plain"),
        body(bytearray(good), "application/octet-stream"),
    ]
    ctx = StandInContext(model_dir, [h for _, h in items])
    out = handler.handle([r for r, _ in items], ctx)
    assert len(out) == len(items)
    assert {i: s[0] for i, s in ctx.statuses.items()} == {1: 400, 3: 413, 4: 415}
    assert out[1]["error"] == "bad_request" and "not a decodable image" in out[1]["message"]
    assert out[3]["error"] == "payload_too_large"
    assert len(out[2]["results"]) == 2 and all(len(r["predictions"]) == 2 for r in out[2]["results"])
    # the same image gives the same answer whichever request (and batch position) it came in
    assert out[0]["predictions"][0] == out[5]["predictions"][0] == out[2]["results"][0]["predictions"][0]


def test_json_with_one_bad_image_names_its_index(handler: ModuleType, model_dir: Path) -> None:
    req, hdr = body({"images": [base64.b64encode(fx.jpeg()).decode(), "aGVsbG8="]}, "application/json")
    ctx = StandInContext(model_dir, [hdr])
    out = handler.handle([req], ctx)
    assert ctx.statuses[0][0] == 400
    assert out[0]["message"].startswith("images[1]: ")


def test_content_type_falls_back_to_request_header(handler: ModuleType, model_dir: Path) -> None:
    ctx = StandInContext(model_dir, [{"content-type": "application/x-www-form-urlencoded"}])
    out = handler.handle([{"hello": b""}], ctx)
    assert ctx.statuses[0][0] == 415
    assert "Content-Type: image/jpeg" in out[0]["message"]


def test_initialisation_drops_only_the_per_batch_log_line(
    handler: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    assert sum(isinstance(f, DropPerBatchChatter) for f in logging.getLogger().filters) == 1
    with caplog.at_level(logging.INFO):
        logging.info("Backend received inference at: %d", 1795318316)  # what TorchServe's worker logs per batch
        logging.info("Backend received an unexpected thing")
    assert [r.getMessage() for r in caplog.records] == ["Backend received an unexpected thing"]


def test_request_id_is_echoed_in_the_body_taken_from_torchserve_or_made(handler: ModuleType, model_dir: Path) -> None:
    good = fx.jpeg(64, 64)
    items = [body(bytearray(good), "image/jpeg") for _ in range(4)]
    items[0][1]["X-Request-Id"] = "abc-123"
    items[1][1]["X-Request-Id"] = "bad id\r\nInjected: 1"  # not a plain token: replaced, never echoed
    items[3][1]["x-request-id"] = "x" * 129  # too long: replaced
    ctx = StandInContext(model_dir, [h for _, h in items])
    ctx.request_ids = {1: "ts-own-id"}
    out = handler.handle([r for r, _ in items], ctx)
    ids = {i: b["request_id"] for i, b in enumerate(out)}
    assert ids[0] == "abc-123"
    assert ids[1] == "ts-own-id"
    assert len(ids[2]) == 32 and len(ids[3]) == 32 and ids[2] != ids[3]
    int(ids[2], 16), int(ids[3], 16)  # uuid4 hex


def _sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_carry_the_archive_version_status_and_error_code(handler: ModuleType, model_dir: Path) -> None:
    """No PROMETHEUS_MULTIPROC_DIR here: the series are in this process's default registry."""
    from prometheus_client import REGISTRY

    v = {"model": "resnet50", "version": "7"}
    before = {
        "ok": _sample("resnet_serving_request_seconds_count", **v, code="200"),
        "bad": _sample("resnet_serving_request_seconds_count", **v, code="400"),
        "err": _sample("resnet_serving_errors_total", **v, code="bad_request"),
        "batches": _sample("resnet_serving_batch_size_count", **v),
        "size": _sample("resnet_serving_batch_size_sum", **v),
        "fwd": _sample("resnet_serving_stage_seconds_count", **v, stage="forward"),
    }
    items = [body(bytearray(fx.jpeg(80, 60)), "image/jpeg"), body(bytearray(b"not an image"), "image/jpeg")]
    handler.handle([r for r, _ in items], StandInContext(model_dir, [h for _, h in items]))
    assert _sample("resnet_serving_request_seconds_count", **v, code="200") == before["ok"] + 1
    assert _sample("resnet_serving_request_seconds_count", **v, code="400") == before["bad"] + 1
    assert _sample("resnet_serving_errors_total", **v, code="bad_request") == before["err"] + 1
    assert _sample("resnet_serving_batch_size_count", **v) == before["batches"] + 1
    assert _sample("resnet_serving_batch_size_sum", **v) == before["size"] + 2
    assert _sample("resnet_serving_stage_seconds_count", **v, stage="forward") == before["fwd"] + 1
    assert _sample("resnet_serving_in_flight_requests", **v) == 0
    info = [
        s
        for m in REGISTRY.collect()
        if m.name == "resnet_serving_model_info"
        for s in m.samples
        if s.labels["version"] == "7"
    ]
    assert len(info) == 1 and info[0].value == 1
    assert info[0].labels["weights"] == "random-seed-0" and info[0].labels["precision"] == "fp32"
    assert len(info[0].labels["sha256"]) == 64
