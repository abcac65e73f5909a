"""The HTTP contract of the inference API, torch-free: request parsing and response shapes.

Accepted request bodies (``POST /predictions/resnet50`` or ``POST /invocations``):

* **Raw image bytes** with ``Content-Type: image/*`` or ``application/octet-stream`` (or none). The header
  ``X-TopK: N`` (or SageMaker's ``X-Amzn-SageMaker-Custom-Attributes: topk=N``) sets the number of
  predictions; TorchServe does not pass query strings of POST requests to the handler.
  Response: ``{"model", "version", "weights", "predictions": [...]}``.
* **JSON** with ``Content-Type: application/json``: ``{"images": ["<base64>", ...], "topk": 3}``. Each
  image is standard or URL-safe base64, optionally a ``data:image/...;base64,`` URI. Response:
  ``{"model", "version", "weights", "results": [{"predictions": [...]}, ...]}`` in request order.
* **multipart/form-data** with one file field named ``data``, ``file``, ``image`` or ``body``.

Errors: ``{"error": code, "message": text, "status": http_status, ...}`` with 400, 413 or 415.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resnet_serving.errors import InputError, PayloadTooLarge, ResnetServingError, UnsupportedMediaType
from resnet_serving.settings import Settings, env_name

BODY_FIELDS = ("body", "data", "file", "image")
JSON_FIELDS = {"images", "topk"}
RAW_CONTENT_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/x-image"}
EMPTY_BODY = (
    "empty body: send image bytes (Content-Type: image/jpeg, image/png, … or application/octet-stream) "
    'or JSON {"images": ["<base64>", ...]} (Content-Type: application/json)'
)
TOO_DEEP = 'invalid JSON: nested too deeply; expected {"images": ["<base64>", ...]}'
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedRequest:
    images: list[bytes]
    topk: int
    multi: bool  # JSON form: the response carries "results", one entry per image


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def parse_topk(value: Any, settings: Settings) -> int:
    if value is None:
        return settings.default_topk
    if isinstance(value, bool):
        raise InputError(f"topk must be an integer in 1..{settings.max_topk}, got {value!r}")
    if isinstance(value, int):
        k = value
    else:
        raw = _text(value).strip()
        if not re.fullmatch(r"[+]?\d{1,6}", raw):
            raise InputError(f"topk must be an integer in 1..{settings.max_topk}, got {raw[:40]!r}")
        k = int(raw)
    if not 1 <= k <= settings.max_topk:
        raise InputError(f"topk must be an integer in 1..{settings.max_topk}, got {k}")
    return k


#: What curl -d/--data-binary sends when no type is given. TorchServe's front end decodes such a body itself, so
#: serve's guard refuses it before the front end does, with the handler's words (docs/architecture.md).
FORM_URLENCODED = "application/x-www-form-urlencoded"


def form_urlencoded_refused() -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"Content-Type {FORM_URLENCODED} is not accepted (curl -d/--data-binary sends it when no type is given): "
        "add -H 'Content-Type: image/jpeg' or the image's own type"
    )


def normalise_content_type(value: Any) -> str:
    if value is None:
        return ""
    return _text(value).split(";", 1)[0].strip().lower()


def header_topk(headers: Mapping[str, str]) -> str | None:
    """``X-TopK: 3``, or SageMaker's ``X-Amzn-SageMaker-Custom-Attributes: topk=3``."""
    if "x-topk" in headers:
        return headers["x-topk"]
    for part in headers.get("x-amzn-sagemaker-custom-attributes", "").split(","):
        key, _, value = part.partition("=")
        if key.strip().lower() == "topk":
            return value.strip()
    return None


def parse_request(
    request: Mapping[str, Any],
    content_type: str | None,
    settings: Settings,
    headers: Mapping[str, str] | None = None,
) -> ParsedRequest:
    """Turn one TorchServe request (its parameters by name) into image bytes and a top-k.

    ``content_type`` is the body's declared content type. TorchServe already decoded ``application/json``
    bodies into Python objects (or left the bytes when they were not valid JSON) and ``text/*`` into str.
    """
    ctype = normalise_content_type(content_type)
    if ctype == FORM_URLENCODED:
        raise form_urlencoded_refused()
    field = next((f for f in BODY_FIELDS if f in request and request[f] is not None), None)
    if field is None:
        raise InputError(EMPTY_BODY)
    body = request[field]
    _check_request_size(body, settings)
    query_topk = header_topk(headers or {})
    if query_topk is not None:  # a malformed X-TopK is an error even where a JSON body's topk wins
        parse_topk(query_topk, settings)

    if ctype == "application/json" or ctype.endswith("+json"):
        return _parse_json(body, query_topk, settings)
    if ctype.startswith("text/"):
        raise UnsupportedMediaType(
            f"Content-Type {ctype} is not accepted: send image bytes as image/* or application/octet-stream, "
            "or JSON as application/json"
        )
    if not (ctype in RAW_CONTENT_TYPES or ctype.startswith("image/")):
        raise UnsupportedMediaType(
            f"Content-Type {ctype} is not accepted: use image/*, application/octet-stream or application/json"
        )
    if isinstance(body, str):  # defensive: TorchServe only decodes text/* to str
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray)):
        raise InputError("body must be raw image bytes")
    if not body:  # a multipart field can be present and empty
        raise InputError(EMPTY_BODY)
    topk = parse_topk(query_topk, settings)
    return ParsedRequest(images=[bytes(body)], topk=topk, multi=False)


def _check_request_size(body: Any, settings: Settings) -> None:
    """On a SageMaker endpoint, refuse a body above its payload limit with 413, as SageMaker itself would."""
    limit = settings.max_request_bytes
    if limit is None:
        return
    if isinstance(body, (bytes, bytearray)):
        size = len(body)
    elif isinstance(body, str):
        size = len(body.encode("utf-8", "surrogatepass"))
    else:  # JSON that TorchServe already decoded: its serialised size is what the client sent, near enough
        try:
            size = len(json.dumps(body, separators=(",", ":")))
        except RecursionError as e:
            raise InputError(TOO_DEEP) from e
    if size > limit:
        raise PayloadTooLarge(
            f"request body is {size} bytes; a SageMaker {settings.sagemaker_mode} endpoint accepts at most "
            f"{limit} bytes ({limit // (1024 * 1024)} MB): send a smaller image"
        )


def _parse_json(body: Any, query_topk: Any, settings: Settings) -> ParsedRequest:
    if isinstance(body, (bytes, bytearray, str)):
        try:
            text = bytes(body).decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
            body = json.loads(text)
        except UnicodeDecodeError as e:
            raise InputError(f"invalid JSON: body is not UTF-8 ({e.reason} at byte {e.start})") from e
        except RecursionError as e:  # json's C parser gives up on deep nesting with RecursionError
            raise InputError(TOO_DEEP) from e
        except ValueError as e:
            if not text.strip():
                raise InputError('empty JSON body: expected {"images": ["<base64>", ...]}') from e
            raise InputError(f"invalid JSON: {e}") from e
    if not isinstance(body, dict):
        raise InputError(f'JSON body must be an object like {{"images": [...]}}, got {type(body).__name__}')
    unknown = sorted(set(body) - JSON_FIELDS)
    if unknown:
        raise InputError(f"unknown JSON field(s): {', '.join(unknown)}; expected 'images' and optional 'topk'")
    images = body.get("images")
    if not isinstance(images, list) or not images:
        raise InputError("JSON field 'images' must be a non-empty list of base64 strings")
    if len(images) > settings.max_images_per_request:
        raise PayloadTooLarge(
            f"{len(images)} images in one request; the limit is {settings.max_images_per_request} "
            f"({env_name('max_images_per_request')})"
        )
    topk = parse_topk(body["topk"] if "topk" in body else query_topk, settings)
    decoded = [_b64(item, i, settings) for i, item in enumerate(images)]
    return ParsedRequest(images=decoded, topk=topk, multi=True)


def _b64(item: Any, i: int, settings: Settings) -> bytes:
    if not isinstance(item, str):
        raise InputError(f"images[{i}] must be a base64 string, got {type(item).__name__}")
    text = _DATA_URI.sub("", item.strip(), count=1)
    # Reject obviously oversized payloads before decoding them (base64 is 4/3 of the bytes).
    if len(text) * 3 // 4 > settings.max_image_bytes + 3:
        raise PayloadTooLarge(
            f"images[{i}] is about {len(text) * 3 // 4} bytes; the limit is {settings.max_image_bytes}"
        )
    text = re.sub(r"\s+", "", text)
    try:
        if "-" in text or "_" in text:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"images[{i}] is not valid base64: {e}") from e
    if not raw:
        raise InputError(f"images[{i}] is empty")
    return raw


def error_body(err: ResnetServingError, meta: Mapping[str, Any], *, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = err.to_dict()
    if index is not None:
        out["message"] = f"images[{index}]: {err.message}"
    out.update(meta)
    return out


def success_body(predictions: list[list[dict[str, Any]]], meta: Mapping[str, Any], *, multi: bool) -> dict[str, Any]:
    out: dict[str, Any] = dict(meta)
    if multi:
        out["results"] = [{"predictions": p} for p in predictions]
    else:
        out["predictions"] = predictions[0]
    return out
