"""One structured line per request: the worker writes it, the front end routes it, ``serve`` prints it.

The path of a line: the handler (:func:`emit`, in the worker) writes it to the worker's stdout. TorchServe's
front end reads each worker's stdout and logs every line on its ``MODEL_LOG`` logger; ``log4j2.xml`` sends the
lines that start with :data:`MARK` to a console appender of their own, unformatted, and keeps them out of the
log files. ``serve`` reads the front end's stdout (:class:`~resnet_serving.torchserve.server.TorchServe` with a
``request_sink``) and prints each such line on its own stdout, as it is (``--log-format json``) or as one short
line for a terminal (``text``). Every other line of the front end goes to ``torchserve.log`` in the run dir.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

#: How every request line starts; log4j2.xml's filters and :func:`is_request_line` match on it.
MARK = '{"event":"request",'
FORMATS = ("json", "text")


def default_format(stream: IO[str] | None = None) -> str:
    """``text`` on a terminal, ``json`` otherwise (a container's stdout, a pipe, a file)."""
    stream = stream if stream is not None else sys.stdout
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # closed or not a real stream
        return "json"


def line(
    *,
    request_id: str,
    meta: Mapping[str, Any],
    status: int,
    body: Mapping[str, Any],
    latency_s: float,
    image_bytes: int,
    images: int,
    batch_size: int,
    now: float | None = None,
) -> str:
    """The JSON text of one request's line (no newline). ``body`` is the response body, for the error code."""
    stamp = time.time() if now is None else now
    record: dict[str, Any] = {
        "event": "request",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z",
        "id": request_id,
        "model": meta.get("model"),
        "version": meta.get("version"),
        "status": status,
        "code": None if status == 200 else body.get("error", "internal_error"),
        "latency_ms": round(latency_s * 1000, 1),
        "image_bytes": image_bytes,
        "images": images,
        "batch_size": batch_size,
    }
    if status != 200:
        record["message"] = body.get("message", "")
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True)


def emit(text: str) -> None:
    """Write one line on the worker's stdout, where the front end reads it (see the module docstring).

    One write call per line, so that nothing else the worker prints can land inside it."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def is_request_line(raw: str) -> bool:
    return raw.startswith(MARK)


def to_text(raw: str) -> str:
    """One request line for a terminal: ``time status latency id model vversion images bytes [code: message]``."""
    try:
        r = json.loads(raw)
    except ValueError:
        return raw
    head = (
        f"{str(r.get('time', ''))[11:23]} {r.get('status')} {r.get('latency_ms')} ms  {r.get('id')}  "
        f"{r.get('model')} v{r.get('version')}  {r.get('images')} image(s) {r.get('image_bytes')} B  "
        f"batch {r.get('batch_size')}"
    )
    return head if r.get("status") == 200 else f"{head}  {r.get('code')}: {r.get('message', '')}"
