"""A real `resnet-serving serve`: every request the handler answers yields exactly one JSON line on serve's
stdout (the caller's id echoed, or TorchServe's own), with the status, the error code, the real version and
what the request carried; nothing else per request, on stdout or in TorchServe's log files."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.fixtures import images as fx
from tests.fixtures.serving import LoggedServe

pytestmark = pytest.mark.torchserve

FIELDS = {"event", "time", "id", "model", "version", "status", "code", "latency_ms", "image_bytes", "images"}


def _log_lines(run_dir: Path) -> dict[str, int]:
    files = [run_dir / "torchserve.log", *sorted((run_dir / "logs").glob("*.log"))]
    return {f.name: len(f.read_text(errors="replace").splitlines()) for f in files if f.exists()}


def test_one_json_line_per_request(logged_serve: LoggedServe) -> None:
    predict = f"{logged_serve.url}/predictions/resnet50"
    good, two = fx.jpeg(96, 64), [fx.jpeg(64, 64), fx.png(80, 60)]
    before, files_before = len(logged_serve.lines()), _log_lines(logged_serve.run_dir)
    started = time.time()
    sent: list[tuple[str | None, int, int, requests.Response, float]] = []  # id sent, bytes, images, response, s

    def post(rid: str | None, data: bytes, ctype: str, nbytes: int, nimages: int, url: str = predict) -> None:
        headers = {"Content-Type": ctype, **({"X-Request-Id": rid} if rid else {})}
        t0 = time.perf_counter()
        r = requests.post(url, data=data, headers=headers, timeout=60)
        sent.append((rid, nbytes, nimages, r, time.perf_counter() - t0))

    post("log-good-1", good, "image/jpeg", len(good), 1)
    post(None, good, "image/jpeg", len(good), 1)
    post("log-bad-1", b"not an image at all", "image/jpeg", 19, 1)
    post(None, good, "text/plain", len(good), 0)  # 415 before parsing: the body's size, no image
    post("log-badjson-1", b'{"images": [', "application/json", 12, 0)  # TorchServe's worker logged a traceback
    body = {"images": [base64.b64encode(b).decode() for b in two]}
    post("log-json-1", json.dumps(body).encode(), "application/json", sum(map(len, two)), 2)
    post("log-sm-1", good, "image/jpeg", len(good), 1, url=f"{logged_serve.url}/invocations")
    gate = threading.Barrier(2)

    def together(rid: str) -> None:
        gate.wait()
        post(rid, good, "image/jpeg", len(good), 1)

    pair = [threading.Thread(target=together, args=(rid,)) for rid in ("log-pair-a", "log-pair-b")]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    finished = time.time()

    records = logged_serve.wait_for_records(before, len(sent))
    time.sleep(0.5)  # and no more lines than requests
    records = logged_serve.request_records(before)
    assert len(records) == len(sent), records
    # the only lines serve printed meanwhile are request lines, and TorchServe's own logs did not grow
    assert all(line.startswith('{"event":"request"') for line in logged_serve.lines()[before:])
    assert _log_lines(logged_serve.run_dir) == files_before

    for rid, nbytes, nimages, r, client_s in sent:
        answer = r.json()
        mine = [rec for rec in records if rec["id"] == answer["request_id"]]
        assert len(mine) == 1, (answer["request_id"], records)
        rec = mine[0]
        assert FIELDS | {"batch_size"} <= rec.keys()
        # serve's guard answers every request with its id in the header: the caller's, else the one it made
        assert rec["id"] == r.headers["X-Request-Id"] == answer["request_id"]
        if rid is not None:
            assert rec["id"] == rid
        assert rec["status"] == r.status_code
        assert rec["code"] == (None if r.status_code == 200 else answer["error"])
        assert (rec["model"], rec["version"]) == ("resnet50", "1") == (answer["model"], answer["version"])
        assert (rec["image_bytes"], rec["images"]) == (nbytes, nimages), rec
        assert 0 < rec["latency_ms"] <= client_s * 1000 + 1, (rec, client_s)
        stamp = datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp()
        assert started - 1 <= stamp <= finished + 1
        if r.status_code != 200:
            assert rec["message"] == answer["message"]
    statuses = sorted(r.status_code for _, _, _, r, _ in sent)
    assert statuses == [200] * 6 + [400, 400, 415], statuses
    pair_records = [rec for rec in records if rec["id"].startswith("log-pair-")]
    # sent together into a 100 ms batch window: one batch of two, one latency
    assert [rec["batch_size"] for rec in pair_records] == [2, 2], pair_records
    assert pair_records[0]["latency_ms"] == pair_records[1]["latency_ms"]


def test_ping_and_front_end_answers_print_no_request_line(logged_serve: LoggedServe) -> None:
    """Only requests that reach the handler are logged: /ping and a 404 from the front end print nothing."""
    before = len(logged_serve.lines())
    assert requests.get(f"{logged_serve.url}/ping", timeout=10).status_code == 200
    assert requests.post(f"{logged_serve.url}/predictions/nope", data=b"x", timeout=10).status_code == 404
    marker = requests.post(
        f"{logged_serve.url}/predictions/resnet50",
        data=fx.jpeg(),
        headers={"Content-Type": "image/jpeg", "X-Request-Id": "log-after-ping"},
        timeout=60,
    )
    assert marker.status_code == 200
    records = logged_serve.wait_for_records(before, 1)
    assert [rec["id"] for rec in records] == ["log-after-ping"]
