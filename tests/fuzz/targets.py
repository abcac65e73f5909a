"""Fuzz targets: one input (bytes) in, and the contract checked. Shared by atheris (tests/fuzz/run.py) and the
corpus replay test, so a saved input reproduces with a plain ``pytest``.

The contract of both entries: any input either succeeds or raises a :class:`ResnetServingError` (a 4xx with a
message). Any other exception propagates, and the fuzzer saves the input that raised it.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import json
from collections.abc import Callable
from typing import Any

from resnet_serving.errors import ResnetServingError
from resnet_serving.inference import imaging, protocol
from resnet_serving.settings import Settings

DEFAULT = Settings()
SCALED = dataclasses.replace(DEFAULT, jpeg_scaled_decode=True)
PIL_RESIZE = dataclasses.replace(DEFAULT, cpu_resize="pil")
#: A SageMaker endpoint also caps the whole body (protocol._check_request_size): both settings get fuzzed.
SAGEMAKER = Settings(sagemaker_mode="realtime")
#: The boundary of the multipart seeds; the fuzzer mutates everything after the first byte.
BOUNDARY = "fuzzb0undary"
RAW_TYPES = (
    "image/jpeg",
    "application/octet-stream",
    "",
    "image/png; charset=binary",
    "text/plain",
    "image/x-anything",
)
_EMAIL = email.parser.BytesParser(policy=email.policy.HTTP)


def expected(fn: Callable[[], Any]) -> None:
    """Run ``fn``; a ResnetServingError is a correct answer to hostile input, anything else is a finding."""
    try:
        fn()
    except ResnetServingError as e:
        assert e.message, f"{type(e).__name__} without a message"
        assert 400 <= e.http_status < 500, f"{type(e).__name__}: {e.http_status} for a bad input"


def fuzz_imaging(data: bytes) -> None:
    """The image entry as the service calls it: the header check, then decode + crop (CPU, both resizes), then full
    decode."""
    expected(lambda: imaging.validate_header(data, DEFAULT))
    expected(lambda: imaging.decode_crop(data, DEFAULT))
    expected(lambda: imaging.decode_crop(data, PIL_RESIZE))  # RESNET_SERVING_CPU_RESIZE=pil: PIL decodes every format
    if data[:2] == b"\xff\xd8":  # the opt-in scaled JPEG decode: libjpeg's reduced-scale path on the same bytes
        expected(lambda: imaging.decode_crop(data, SCALED))
    if data[:1] in (b"\xff", b"\x89"):  # the accelerator path's decode, for the formats it has a fast path for
        expected(lambda: imaging.decode_image(data, DEFAULT))


def torchserve_value(content_type: str, value: bytes) -> Any:
    """What TorchServe's worker hands the handler for a body part (ts/protocol/otf_message_handler.py)."""
    if content_type == "application/json":
        try:
            return json.loads(value.decode("utf-8"))
        except Exception:  # TorchServe forwards the bytes when its own decode fails, whatever the reason
            return value
    if content_type.startswith("text"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def multipart_fields(body: bytes) -> tuple[dict[str, Any], dict[str, str]] | None:
    """Fields and their content types, as TorchServe's front end splits a multipart/form-data body; None when a
    parser refuses it (the front end answers such a request itself, before the handler runs)."""
    head = f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
    try:
        message = _EMAIL.parsebytes(head + body)
        fields: dict[str, Any] = {}
        types: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            ctype = part.get_content_type() if part.get("content-type") else "application/octet-stream"
            raw = part.get_payload(decode=True)
            if not isinstance(raw, bytes):
                continue
            fields[name], types[name] = torchserve_value(ctype, raw), ctype
    except Exception:
        return None
    return fields, types


def fuzz_protocol(data: bytes) -> None:
    """Request parsing as the handler drives it. The first byte picks the form (raw, JSON, multipart) and the
    settings; a raw request's topk header rides at the start of the body, up to the first newline."""
    if not data:
        return
    selector, rest = data[0], data[1:]
    settings = SAGEMAKER if selector & 0x80 else DEFAULT
    form = selector % 3
    if form == 0:
        line, _, body = rest.partition(b"\n")
        headers = (
            {"x-topk": line.decode("utf-8", "replace")}
            if selector & 0x40
            else {"x-amzn-sagemaker-custom-attributes": line.decode("utf-8", "replace")}
        )
        ctype = RAW_TYPES[(selector >> 2) % len(RAW_TYPES)]
        requests = [({"body": torchserve_value(ctype, body)}, ctype, headers)]
    elif form == 1:
        value = torchserve_value("application/json", rest) if selector & 0x40 else rest
        requests = [({"body": value}, "application/json", {})]
    else:
        split = multipart_fields(rest)
        if split is None:
            return
        fields, types = split
        field = next((f for f in protocol.BODY_FIELDS if f in fields), None)
        requests = [(fields, types.get(field or "", None), {})]
    for request, ctype, headers in requests:
        expected(lambda: _parse_then_check(request, ctype, settings, headers))  # noqa: B023 (called at once)


def _parse_then_check(request: dict[str, Any], ctype: str | None, settings: Settings, headers: dict[str, str]) -> None:
    parsed = protocol.parse_request(request, ctype, settings, headers)
    assert 1 <= parsed.topk <= settings.max_topk, f"topk {parsed.topk} outside 1..{settings.max_topk}"
    assert parsed.images and len(parsed.images) <= settings.max_images_per_request
    for raw in parsed.images:
        assert isinstance(raw, bytes) and raw, "parse_request returned an empty image"
        expected(lambda: imaging.validate_header(raw, settings))  # noqa: B023 (called at once)


TARGETS: dict[str, Callable[[bytes], None]] = {"imaging": fuzz_imaging, "protocol": fuzz_protocol}
