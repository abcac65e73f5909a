"""End to end against a real TorchServe 0.12 (Java front end, Python workers) on loopback ports."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from resnet_serving.inference.cpu import available_cpus
from resnet_serving.settings import environment
from tests.fixtures import images as fx
from tests.fixtures.serving import LoggedServe
from tests.fixtures.torchserve import RunningTorchServe


def post(ts: RunningTorchServe, data: bytes, ctype: str | None, *, path: str | None = None, **kw) -> requests.Response:
    headers = {"Content-Type": ctype} if ctype is not None else {}
    url = f"{ts.url}{path}" if path else ts.predict_url
    return requests.post(url, data=data, headers=headers, timeout=60, **kw)


def test_real_photo_classified_end_to_end(torchserve: RunningTorchServe) -> None:
    r = post(torchserve, fx.PHOTO.read_bytes(), "image/jpeg")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "resnet50" and body["version"] == "1"
    assert body["weights"] == "random-seed-0" and "meaningless" in body["warning"]
    preds = body["predictions"]
    assert len(preds) == 5
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert all(set(p) == {"label", "index", "score"} and 0 <= p["index"] < 1000 for p in preds)


def test_topk_query_and_invocations_route(torchserve: RunningTorchServe) -> None:
    r = requests.post(
        torchserve.predict_url, data=fx.jpeg(), headers={"Content-Type": "image/jpeg", "X-TopK": "3"}, timeout=60
    )
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3
    inv = post(torchserve, fx.jpeg(), "image/jpeg", path="/invocations")
    assert inv.status_code == 200, inv.text
    assert inv.json()["predictions"][0] == post(torchserve, fx.jpeg(), "image/jpeg").json()["predictions"][0]


def test_panorama_and_thin_images_are_classified(torchserve: RunningTorchServe) -> None:
    """Any aspect ratio within the pixel limit: only the region the centre crop keeps is resized."""
    for w, h in ((3000, 20), (4000, 50), (1, 40_000)):
        r = post(torchserve, fx.png(w, h), "image/png")
        assert r.status_code == 200, f"{w}×{h}: {r.text[:300]}"
        assert len(r.json()["predictions"]) == 5


def test_json_form_with_several_images(torchserve: RunningTorchServe) -> None:
    imgs = [fx.jpeg(), fx.png(80, 80), fx.PHOTO.read_bytes()]
    payload = {"images": [base64.b64encode(b).decode() for b in imgs], "topk": 2}
    r = requests.post(torchserve.predict_url, json=payload, timeout=60)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3 and all(len(x["predictions"]) == 2 for x in results)
    single = post(torchserve, fx.PHOTO.read_bytes(), "image/jpeg").json()["predictions"][0]
    assert results[2]["predictions"][0]["index"] == single["index"]


def test_multipart_form_upload(torchserve: RunningTorchServe) -> None:
    r = requests.post(torchserve.predict_url, files={"data": ("x.jpg", fx.jpeg(), "image/jpeg")}, timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5


def test_concurrent_batch_with_one_bad_image(torchserve: RunningTorchServe) -> None:
    """8 requests released together (the test server waits 300 ms to fill a batch of 8): only the bad one fails."""
    good = fx.PHOTO.read_bytes()
    bodies = [good] * 7
    bodies.insert(3, b"GIF89a this is not really a gif")
    barrier = threading.Barrier(len(bodies))

    def send(data: bytes) -> requests.Response:
        barrier.wait()
        return post(torchserve, data, "image/gif" if data.startswith(b"GIF") else "image/jpeg")

    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(send, bodies))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 400, 200, 200, 200, 200], [r.text[:200] for r in responses]
    assert "GIF" in responses[3].json()["message"]
    top = {r.json()["predictions"][0]["index"] for i, r in enumerate(responses) if i != 3}
    assert len(top) == 1  # the same image gets the same answer in every batch position


def _process_env(pid: int) -> dict[str, str]:
    """A process's environment, as the kernel holds it (/proc/PID/environ)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a worker's environment from /proc")
def test_the_one_worker_gets_every_cpu_and_the_callers_openmp_wait_policy(
    torchserve: RunningTorchServe,
) -> None:
    """serve's layout: the worker's torch threads are all the CPUs; OpenMP's wait policy is the caller's (none set:
    libgomp's default, which spins briefly at a barrier before it sleeps)."""
    (pid,) = torchserve.management.worker_pids("resnet50")
    env = _process_env(pid)
    assert env["RESNET_SERVING_TORCH_THREADS"] == env["OMP_NUM_THREADS"] == str(available_cpus())
    mine = environment()
    assert env.get("OMP_WAIT_POLICY") == mine.get("OMP_WAIT_POLICY")
    assert env.get("GOMP_SPINCOUNT") == mine.get("GOMP_SPINCOUNT")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a worker's environment from /proc")
def test_serve_gives_its_worker_a_short_openmp_spin_unless_the_caller_chose_a_wait(
    logged_serve: LoggedServe,
) -> None:
    """`serve`'s worker spins GOMP_SPINCOUNT times at a barrier before it sleeps (cpu.GOMP_SPINCOUNT), unless
    serve's caller set OMP_WAIT_POLICY or GOMP_SPINCOUNT: then the caller's values reach the worker unchanged."""
    from resnet_serving.inference.cpu import GOMP_SPINCOUNT, OPENMP_WAIT_VARIABLES, openmp_wait
    from resnet_serving.torchserve.management import ManagementClient

    management = ManagementClient(f"http://127.0.0.1:{logged_serve.cmd.ports['management-port']}")
    (pid,) = management.worker_pids("resnet50")
    env = _process_env(pid)
    mine = environment()
    assert {name: env[name] for name in OPENMP_WAIT_VARIABLES if name in env} == openmp_wait(mine)
    if not any(name in mine for name in OPENMP_WAIT_VARIABLES):  # CI: nothing chosen, so serve's spin count
        assert env["GOMP_SPINCOUNT"] == GOMP_SPINCOUNT and "OMP_WAIT_POLICY" not in env


def _png_mode(mode: str, size: tuple[int, int] = (40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


BAD_INPUTS: list[tuple[str, bytes, str | None, int, str]] = [
    # (id, body, content type, expected status, text expected in the message)
    ("zero-bytes", b"", "image/jpeg", 400, "empty body"),
    ("plain-text-as-jpeg", b"hello, this is text", "image/jpeg", 400, "not a decodable image"),
    ("truncated-jpeg", fx.PHOTO.read_bytes()[:3000], "image/jpeg", 400, "truncated"),
    ("jpeg-magic-garbage", b"\xff\xd8\xff\xe0" + b"\x13" * 500, "image/jpeg", 400, "JPEG"),
    ("truncated-png", fx.png(200, 200)[:100], "image/png", 400, "PNG"),
    ("huge-pixel-png", fx.png_huge_header(60_000, 60_000), "image/png", 413, "pixels"),
    ("tiff", b"II*\x00" + b"\x00" * 64, "image/tiff", 415, "TIFF"),
    ("pdf", b"%PDF-1.7\n" + b"0" * 64, "application/octet-stream", 415, "PDF"),
    ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 415, "SVG"),
    ("text-content-type", fx.jpeg(), "text/plain", 415, "text/plain"),
    ("xml-content-type", fx.jpeg(), "application/xml", 415, "application/xml"),
    ("form-urlencoded-ascii", b"image=cat.jpg", "application/x-www-form-urlencoded", 415, "form-urlencoded"),
    ("json-syntax", b'{"images": [', "application/json", 400, "invalid JSON"),
    ("json-not-object", b"[1, 2, 3]", "application/json", 400, "must be an object"),
    ("json-unknown-field", b'{"image": "abc"}', "application/json", 400, "unknown JSON field"),
    ("json-bad-base64", b'{"images": ["%%%not-base64%%%"]}', "application/json", 400, "not valid base64"),
    ("json-base64-of-text", b'{"images": ["aGVsbG8gd29ybGQ="]}', "application/json", 400, "images[0]"),
    ("json-topk-zero", json.dumps({"images": [base64.b64encode(fx.jpeg()).decode()], "topk": 0}).encode(),
     "application/json", 400, "topk"),
    ("json-too-many-images", json.dumps({"images": ["aGk="] * 17}).encode(), "application/json", 413, "17 images"),
    ("json-not-utf8", b'{"images": ["\xff\xfe"]}', "application/json", 400, "UTF-8"),
]  # fmt: skip


@pytest.fixture(scope="module")
def worker_pids_before(torchserve: RunningTorchServe) -> list[int]:
    pids = torchserve.management.worker_pids("resnet50")
    assert pids, "no worker PIDs reported"
    return pids


@pytest.mark.parametrize(("name", "data", "ctype", "status", "needle"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_corpus(
    torchserve: RunningTorchServe, worker_pids_before: list[int], name: str, data: bytes, ctype: str | None,
    status: int, needle: str,
) -> None:  # fmt: skip
    r = post(torchserve, data, ctype)
    assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["status"] == status and body["error"] and needle in body["message"], body


def test_bad_topk_header(torchserve: RunningTorchServe, worker_pids_before: list[int]) -> None:
    for value in ("abc", "0", "101", "-3"):
        r = requests.post(
            torchserve.predict_url, data=fx.jpeg(), headers={"Content-Type": "image/jpeg", "X-TopK": value}, timeout=60
        )
        assert r.status_code == 400 and "topk" in r.json()["message"], r.text


def test_binary_form_urlencoded_is_a_known_front_end_500(torchserve: RunningTorchServe) -> None:
    """TorchServe's Java front end decodes x-www-form-urlencoded bodies itself and answers 500 on binary bytes,
    before our handler runs. Pinned here (TorchServe's own port, no guard) so a change is noticed: it is why
    serve's guard answers that type 415 first (test_openapi_contract.py), and so does the chart's ALB rule."""
    r = post(torchserve, fx.PHOTO.read_bytes(), "application/x-www-form-urlencoded")
    assert r.status_code == 500
    assert "ErrorDataDecoderException" in r.text


def test_server_healthy_and_workers_unchanged_after_bad_inputs(
    torchserve: RunningTorchServe, worker_pids_before: list[int]
) -> None:
    # runs after the corpus (file order); check again that nothing above killed or restarted a worker
    for _name, data, ctype, _, _ in BAD_INPUTS:
        post(torchserve, data, ctype)
    assert requests.get(f"{torchserve.url}/ping", timeout=10).json()["status"] == "Healthy"
    assert torchserve.management.worker_pids("resnet50") == worker_pids_before
    assert post(torchserve, fx.PHOTO.read_bytes(), "image/jpeg").status_code == 200


def test_front_end_logs_one_request_line_per_request_and_no_per_request_chatter(
    torchserve: RunningTorchServe,
) -> None:
    """Our log4j2.xml: TorchServe's built-in one wrote ~9 lines per request to stdout and ts_log.log (jobId,
    waiting time, backend time, each twice in ts_log). Now each request leaves one line, the handler's JSON line,
    unformatted on the front end's stdout (this fixture's log file; `serve` prints it), and nothing else: no
    access-log line, and the handler drops the worker's per-batch "Backend received inference" line."""
    logs = torchserve.server.run_dir / "logs"
    access = logs / "access_log.log"

    def access_lines() -> int:
        return len(access.read_text(encoding="utf-8").splitlines()) if access.exists() else 0

    def request_lines() -> list[str]:
        text = torchserve.server.log_file.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if line.startswith('{"event":"request",')]

    before, before_access = len(request_lines()), access_lines()
    for _ in range(5):
        assert post(torchserve, fx.jpeg(), "image/jpeg").status_code == 200
    deadline = time.monotonic() + 10
    while len(request_lines()) < before + 5 and time.monotonic() < deadline:  # log4j writes asynchronously
        time.sleep(0.1)
    assert len(request_lines()) == before + 5
    assert json.loads(request_lines()[-1])["status"] == 200
    assert access_lines() == before_access  # TorchServe's access log is off: the request line replaces it
    for path in (torchserve.server.log_file, logs / "ts_log.log"):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "Torchserve version" in text  # the start-up block: the config logs what matters, once
        assert text.count("Torchserve version") == 1
        for chatter in ("Sending response for jobId", "Backend response time", "Waiting time ns"):
            assert chatter not in text, f"{path.name}: per-request line {chatter!r}"
    assert "ACCESS_LOG" not in torchserve.server.log_file.read_text(encoding="utf-8", errors="replace")
    model_log = (logs / "model_log.log").read_text(encoding="utf-8", errors="replace")
    assert "resnet-serving handler ready" in model_log  # the worker's own log still arrives
    for text in (model_log, (logs / "ts_log.log").read_text(encoding="utf-8", errors="replace")):
        assert '"event":"request"' not in text  # request lines go to stdout only
    assert "Backend received inference at" not in model_log  # the handler's filter drops the per-batch line
