from __future__ import annotations

import base64
import json

import pytest

from resnet_serving.errors import ConfigError, InputError, PayloadTooLarge, UnsupportedMediaType
from resnet_serving.inference import protocol
from resnet_serving.settings import Settings

S = Settings(max_images_per_request=3, max_topk=10, default_topk=5, max_image_bytes=1000)


def parse(req: dict, ctype: str | None = "image/jpeg", headers: dict | None = None) -> protocol.ParsedRequest:
    return protocol.parse_request(req, ctype, S, headers)


def test_raw_body_with_topk_header() -> None:
    p = parse({"body": bytearray(b"abc")}, headers={"x-topk": "3"})
    assert p.images == [b"abc"] and p.topk == 3 and not p.multi


def test_topk_from_sagemaker_custom_attributes() -> None:
    p = parse({"body": b"x"}, headers={"x-amzn-sagemaker-custom-attributes": "trace=1, topk=7"})
    assert p.topk == 7


@pytest.mark.parametrize("ctype", [None, "", "application/octet-stream", "image/png; charset=binary", "IMAGE/JPEG"])
def test_raw_content_types_accepted(ctype: str | None) -> None:
    assert parse({"data": b"x"}, ctype).images == [b"x"]


def test_default_topk() -> None:
    assert parse({"body": b"x"}).topk == 5


@pytest.mark.parametrize("value", ["0", "11", "abc", "-1", "1.5", ""])
def test_bad_topk_header(value: str) -> None:
    with pytest.raises(InputError, match=r"topk must be an integer in 1\.\.10"):
        parse({"body": b"x"}, headers={"x-topk": value})


@pytest.mark.parametrize("value", [0, 11, "3", True, 2.0, [3]])
def test_bad_topk_json(value: object) -> None:
    body = {"images": [b64(b"x")], "topk": value}
    if value == "3":  # a numeric string is accepted in JSON too
        assert parse({"body": body}, "application/json").topk == 3
        return
    with pytest.raises(InputError, match=r"topk must be an integer in 1\.\.10"):
        parse({"body": body}, "application/json")


@pytest.mark.parametrize(
    ("ctype", "error"),
    [
        ("text/plain", UnsupportedMediaType),
        ("application/xml", UnsupportedMediaType),
        ("application/x-www-form-urlencoded", UnsupportedMediaType),
    ],
)
def test_rejected_content_types(ctype: str, error: type) -> None:
    with pytest.raises(error, match="Content-Type"):
        parse({"body": b"x"}, ctype)


def test_missing_body() -> None:
    with pytest.raises(InputError, match="empty body"):
        parse({"other": b"3"})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_form_already_decoded_by_torchserve() -> None:
    p = parse({"body": {"images": [b64(b"one"), b64(b"two")], "topk": 2}}, "application/json")
    assert p.images == [b"one", b"two"] and p.topk == 2 and p.multi


def test_json_form_from_bytes_with_data_uri_and_urlsafe() -> None:
    raw = bytes(range(250, 256)) * 3
    body = json.dumps({"images": ["data:image/jpeg;base64," + b64(raw), base64.urlsafe_b64encode(raw).decode()]})
    p = parse({"body": body.encode()}, "application/json")
    assert p.images == [raw, raw]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"{bad", "invalid JSON"),
        (b"", "empty JSON body"),
        (b"\xff\xfe", "not UTF-8"),
        ([1, 2], "must be an object"),
        ({"image": "x"}, "unknown JSON field"),
        ({"images": []}, "non-empty list"),
        ({"images": "abc"}, "non-empty list"),
        ({"images": [123]}, r"images\[0\] must be a base64 string"),
        ({"images": ["!!!notbase64"]}, r"images\[0\] is not valid base64"),
        ({"images": [""]}, r"images\[0\] is empty"),
        ({"images": [b64(b"x")], "topk": "many"}, "topk"),
    ],
)
def test_bad_json(body: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse({"body": body}, "application/json")


def test_too_many_images_is_413() -> None:
    with pytest.raises(PayloadTooLarge, match="4 images"):
        parse({"body": {"images": [b64(b"x")] * 4}}, "application/json")


def test_oversized_base64_is_413_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match=r"images\[0\]"):
        parse({"body": {"images": ["A" * 4000]}}, "application/json")


def test_response_shapes() -> None:
    meta = {"model": "resnet50", "version": "2", "weights": "w"}
    preds = [[{"label": "a", "index": 0, "score": 1.0}]]
    single = protocol.success_body(preds, meta, multi=False)
    assert single["predictions"] == preds[0] and single["version"] == "2"
    multi = protocol.success_body(preds * 2, meta, multi=True)
    assert multi["results"] == [{"predictions": preds[0]}] * 2
    err = protocol.error_body(InputError("nope"), meta, index=1)
    assert err == {"error": "bad_request", "message": "images[1]: nope", "status": 400, **meta}


@pytest.mark.parametrize(("mode", "limit"), [("realtime", 6 * 1024 * 1024), ("serverless", 4 * 1024 * 1024)])
def test_sagemaker_mode_caps_the_whole_body(mode: str, limit: int) -> None:
    settings = Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": mode})
    assert settings.max_request_bytes == limit
    ok = protocol.parse_request({"body": b"x" * limit}, "image/jpeg", settings)
    assert len(ok.images[0]) == limit
    with pytest.raises(PayloadTooLarge, match=f"SageMaker {mode} endpoint accepts at most {limit} bytes"):
        protocol.parse_request({"body": b"x" * (limit + 1)}, "image/jpeg", settings)
    with pytest.raises(PayloadTooLarge):
        protocol.parse_request({"body": {"images": ["A" * limit]}}, "application/json", settings)
    assert Settings().max_request_bytes is None


def test_unknown_sagemaker_mode_fails_at_start() -> None:
    with pytest.raises(
        ConfigError, match="RESNET_SERVING_SAGEMAKER_MODE='batch': expected one of realtime, serverless"
    ):
        Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": "batch"})


@pytest.mark.parametrize(
    "body",
    [b'{"images": ' + b"[" * 5000, b"[" * 100_000, "[" * 100_000],
    ids=["deep-images", "deep-bytes", "deep-str"],
)
def test_deeply_nested_json_is_a_400_not_a_recursion_error(body: object) -> None:
    """Found by tests/fuzz: json's C parser raises RecursionError (not ValueError) on deep nesting."""
    with pytest.raises(InputError, match="nested too deeply"):
        parse({"body": body}, "application/json")


def test_deeply_nested_decoded_json_on_sagemaker_is_a_400() -> None:
    deep: list = []
    for _ in range(100_000):  # deeper than json.dumps can serialise: TorchServe never decodes this far, but
        deep = [deep]  # the size check must not turn such an object into a 500 either
    settings = Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": "realtime"})
    with pytest.raises(InputError, match="nested too deeply"):
        protocol.parse_request({"body": {"images": deep}}, "application/json", settings)


def test_empty_raw_body_field_is_refused_by_the_parser() -> None:
    """Found by tests/fuzz: a multipart field that is present but empty reached the decoder as an empty image."""
    with pytest.raises(InputError, match="empty body"):
        parse({"data": b""}, "image/jpeg")


@pytest.mark.parametrize("mode", ["", "realtime"])
def test_a_str_body_with_a_lone_surrogate_is_a_400_not_a_unicode_error(mode: str) -> None:
    """Found by tests/fuzz: TorchServe decodes the JSON string "\ud800" to a str that UTF-8 cannot encode."""
    settings = Settings.from_env({"RESNET_SERVING_SAGEMAKER_MODE": mode} if mode else {})
    with pytest.raises(InputError, match="invalid JSON"):  # a str body is JSON text; this one is not JSON
        protocol.parse_request({"body": "\ud800"}, "application/json", settings)
    raw = protocol.parse_request({"body": "\udcff"}, "image/jpeg", settings)  # bytes for the decoder to refuse
    assert raw.images == [b"\xed\xb3\xbf"]
