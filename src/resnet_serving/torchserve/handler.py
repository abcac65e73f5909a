"""The TorchServe handler: adapts TorchServe's ``context`` to :mod:`resnet_serving.inference.service`; no model logic.

TorchServe calls ``handle(None, context)`` once to initialise, then ``handle(batch, context)`` per dynamic
batch. Each request in the batch gets its own HTTP status via ``context.set_response_status(code, phrase,
idx)``, so one bad image fails only its own request.

``handlers/resnet50_handler.py``, the file packed into every .mar, only imports :func:`handle` from here. An
archive outlives the image that built it (the store keeps old versions, and sync serves them with whatever
package the image has), so ``resnet_serving.torchserve.handler.handle(data, context)`` is the one name every
archive depends on: keep it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from resnet_serving.errors import ResnetServingError
from resnet_serving.inference.cpu import release_free_heap
from resnet_serving.inference.service import InferenceService, Response, configure_threads
from resnet_serving.settings import Settings
from resnet_serving.torchserve import requestlog

log = logging.getLogger(__name__)
_service: InferenceService | None = None


class DropPerBatchChatter(logging.Filter):
    """TorchServe's worker logs "Backend received inference at: <epoch>" on the root logger for every batch, and a
    traceback for every body that is not the JSON or UTF-8 text its Content-Type says; the front end then writes
    them to stdout, model_log.log and ts_log.log. Dropped (the request's own log line says what was wrong); every
    other record passes."""

    DROPPED = (
        "Backend received inference at",
        "Failed json decoding of input data",
        "Failed utf-8 decoding of input data",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


def _headers(context: Any, idx: int) -> dict[str, str]:
    """Request headers, lower-cased. TorchServe also files per-parameter content types here, as dicts."""
    try:
        raw = context.get_all_request_header(idx) or {}
    except (KeyError, IndexError, TypeError, AttributeError):
        return {}
    return {str(k).lower(): v for k, v in raw.items() if isinstance(v, str)}


def _content_type(context: Any, idx: int, request: Any, headers: dict[str, str]) -> str | None:
    """The body's content type, as TorchServe recorded it per parameter (falling back to the header)."""
    field = next((f for f in ("body", "data", "file", "image") if isinstance(request, dict) and f in request), None)
    if field is not None:
        try:
            prop = context.get_request_header(idx, field)
        except (KeyError, IndexError, TypeError, AttributeError):
            prop = None
        if isinstance(prop, dict) and prop.get("content-type"):
            return str(prop["content-type"])
    return headers.get("content-type")


#: An id the caller sent is echoed only if it is a plain token: it lands in logs and log queries.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def request_id(context: Any, idx: int, headers: dict[str, str]) -> str:
    """The caller's ``X-Request-Id`` if it is a plain token, else TorchServe's own id for the request, else new."""
    sent = headers.get("x-request-id", "").strip()
    if _REQUEST_ID.match(sent):
        return sent
    try:
        own = context.get_request_id(idx)
    except (KeyError, IndexError, TypeError, AttributeError):
        own = None
    return str(own) if own else uuid.uuid4().hex


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    global _service
    if data is None:  # initialisation call
        root = logging.getLogger()
        if not any(isinstance(f, DropPerBatchChatter) for f in root.filters):
            root.addFilter(DropPerBatchChatter())
        settings = Settings.from_env()  # once per worker: the threads, the model's switches and the service's
        threads = configure_threads(settings)
        props = context.system_properties
        _service = InferenceService.from_model_dir(
            props.get("model_dir"),
            props.get("gpu_id"),
            batch_size=int(props.get("batch_size") or 8),
            settings=settings,
        )
        release_free_heap()  # hand back what loading and freezing freed, before the first request
        log.info(
            "resnet-serving handler ready: %s on %s (%s), %d torch threads",
            _service.meta,
            _service.classifier.device,
            _service.classifier.graph,
            threads,
        )
        return None
    if _service is None:
        raise ResnetServingError("handler used before initialisation")
    started = time.perf_counter()
    headers = [_headers(context, i) for i in range(len(data))]
    ctypes = [_content_type(context, i, req, headers[i]) for i, req in enumerate(data)]
    responses = _service.handle(data, ctypes, headers)
    # TorchServe 0.12's front end overwrites any x-request-id header a handler sets with its own id, so the
    # caller's id is echoed in the body; without one, the body carries TorchServe's id, the header's value.
    ids = [request_id(context, idx, headers[idx]) for idx in range(len(responses))]
    for idx, resp in enumerate(responses):
        context.set_response_content_type(idx, "application/json")
        if resp.status != 200:
            context.set_response_status(resp.status, resp.phrase, idx)
    _log_requests(responses, ids, time.perf_counter() - started)
    return [{**resp.body, "request_id": ids[idx]} for idx, resp in enumerate(responses)]


def _log_requests(responses: list[Response], ids: list[str], latency_s: float) -> None:
    """One line per request (requestlog: the front end routes it to serve's stdout), after the batch is done."""
    assert _service is not None
    for resp, rid in zip(responses, ids, strict=True):
        requestlog.emit(
            requestlog.line(
                request_id=rid,
                meta=_service.meta,
                status=resp.status,
                body=resp.body,
                latency_s=latency_s,
                image_bytes=resp.image_bytes,
                images=resp.images,
                batch_size=len(responses),
            )
        )
