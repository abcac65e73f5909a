"""The request line: its fields, the log4j2.xml filters that route it, the text form, the default format, and the
handler writing one per request (with a stand-in context: the real path is tests/integration/test_request_log.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from resnet_serving.cli import main
from resnet_serving.torchserve import requestlog
from resnet_serving.torchserve.handler import DropPerBatchChatter
from resnet_serving.torchserve.server import LOG_CONFIG
from tests.fixtures import images as fx
from tests.helpers.handler import StandInContext, body

META = {"model": "resnet50", "version": "3", "weights": "imagenet"}


def _line(status: int = 200, body: dict | None = None, **kw: object) -> str:
    args: dict = {
        "request_id": "abc-1",
        "meta": META,
        "status": status,
        "body": body or {},
        "latency_s": 0.04123,
        "image_bytes": 1234,
        "images": 1,
        "batch_size": 2,
        "now": 1796123546.8351,
    }
    args.update(kw)
    return requestlog.line(**args)


def test_a_success_line() -> None:
    text = _line()
    assert text.startswith(requestlog.MARK) and requestlog.is_request_line(text)
    assert json.loads(text) == {
        "event": "request",
        "time": "2026-12-01T11:12:26.835Z",
        "id": "abc-1",
        "model": "resnet50",
        "version": "3",
        "status": 200,
        "code": None,
        "latency_ms": 41.2,
        "image_bytes": 1234,
        "images": 1,
        "batch_size": 2,
    }


def test_an_error_line_carries_code_and_message_on_one_line() -> None:
    text = _line(400, {"error": "bad_request", "message": "images[0]: not base64\r\nInjected: 1"}, images=0)
    assert "\n" not in text and "\r" not in text
    record = json.loads(text)
    assert record["code"] == "bad_request" and record["message"].endswith("Injected: 1")


def test_the_front_end_filters_route_exactly_the_request_lines() -> None:
    """log4j2.xml's RegexFilters (Java's matches(): the whole message) select the lines `line` makes."""
    root = ET.parse(LOG_CONFIG).getroot()
    model_log = next(e for e in root.iter("Logger") if e.get("name") == "MODEL_LOG")
    assert model_log.get("additivity") == "false"
    refs = {ref.get("ref"): ref.find("RegexFilter") for ref in model_log.iter("AppenderRef")}
    assert set(refs) == {"REQUESTS", "model_log", "STDOUT", "ts_log"}
    torchserve_line = "Torch worker started."
    for name, flt in refs.items():
        assert flt is not None, name
        pattern = re.compile(flt.get("regex", ""))
        assert pattern.fullmatch(_line()) and pattern.fullmatch(_line(415, {"error": "x", "message": "y"}))
        assert not pattern.fullmatch(torchserve_line) and not pattern.fullmatch('{"status": "Healthy"}')
        on_match = "ACCEPT" if name == "REQUESTS" else "DENY"
        assert (flt.get("onMatch"), flt.get("onMismatch")) == (on_match, "DENY" if name == "REQUESTS" else "NEUTRAL")
    requests_appender = next(e for e in root.iter("Console") if e.get("name") == "REQUESTS")
    assert requests_appender.find("PatternLayout").get("pattern") == "%m%n"  # type: ignore[union-attr]
    access = next(e for e in root.iter("Logger") if e.get("name") == "ACCESS_LOG")
    assert access.get("level") == "off"  # our line replaces TorchServe's access log


def test_text_form() -> None:
    assert requestlog.to_text(_line()) == ("11:12:26.835 200 41.2 ms  abc-1  resnet50 v3  1 image(s) 1234 B  batch 2")
    bad = requestlog.to_text(_line(413, {"error": "payload_too_large", "message": "too big"}))
    assert bad.endswith("payload_too_large: too big") and " 413 " in bad


def test_default_format_is_text_on_a_terminal_json_elsewhere(tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    with open(secondary, "w") as tty, open(tmp_path / "out", "w") as file:
        assert requestlog.default_format(tty) == "text"
        assert requestlog.default_format(file) == "json"
        assert requestlog.default_format(io.StringIO()) == "json"
    os.close(primary)


def test_serve_refuses_an_unknown_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--log-format", "xml"])
    assert exc.value.code == 2
    assert "--log-format" in capsys.readouterr().err


def test_the_handler_writes_one_line_per_request(
    handler: ModuleType,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = fx.jpeg(64, 64)
    items = [body(bytearray(good), "image/jpeg"), body(b"nope", "image/jpeg"), body("hi", "text/plain")]
    items[0][1]["X-Request-Id"] = "mine-1"
    ctx = StandInContext(model_dir, [h for _, h in items])
    capsys.readouterr()
    out = handler.handle([r for r, _ in items], ctx)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(requestlog.is_request_line(line) for line in lines)
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == [b["request_id"] for b in out] and records[0]["id"] == "mine-1"
    assert [(r["status"], r["code"]) for r in records] == [
        (200, None),
        (400, "bad_request"),
        (415, "unsupported_media_type"),
    ]
    assert [(r["image_bytes"], r["images"]) for r in records] == [(len(good), 1), (4, 1), (2, 0)]
    assert {r["batch_size"] for r in records} == {3} and {r["version"] for r in records} == {"7"}


def test_torchserve_tracebacks_for_undecodable_bodies_are_dropped(
    handler: ModuleType,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert sum(isinstance(f, DropPerBatchChatter) for f in logging.getLogger().filters) == 1
    with caplog.at_level(logging.INFO):
        # what TorchServe's worker logs, with a traceback, for a body that is not its Content-Type's JSON or text
        logging.warning("Failed json decoding of input data. Forwarding encoded payload", exc_info=True)
        logging.warning("Failed utf-8 decoding of input data. Forwarding encoded payload", exc_info=True)
        logging.warning("Failed to load the model")
    assert [r.getMessage() for r in caplog.records] == ["Failed to load the model"]
