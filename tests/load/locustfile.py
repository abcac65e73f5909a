"""Load test for any resnet-serving endpoint: local `serve`, a port-forward, or the ALB.

    locust -f tests/load/locustfile.py --host https://resnet50.example.com --headless -u 16 -r 4 -t 2m \\
        --payload-dir examples/ --mode raw --topk 5 --auth-header "Authorization: Bearer $TOKEN"

Options (also as environment variables LOCUST_PAYLOAD_DIR, LOCUST_MODE, …, as locust does for its own):

* ``--payload-dir DIR``: images sent round-robin (JPEG/PNG/WebP/GIF/BMP; default ``examples/``).
* ``--mode raw|json``: raw image bytes to ``/predictions/resnet50``, or the JSON form with base64 images.
* ``--images-per-request N``: with ``--mode json``, images per request (default 4).
* ``--topk K``: predictions asked for (``X-TopK`` header / ``topk`` field) and checked.
* ``--auth-header "Name: value"``: sent with every request (ALB OIDC/Cognito, API gateways).
* ``--path``: the route (default ``/predictions/resnet50``; ``/invocations`` for SageMaker-style).

A 200 is not enough: every response is checked (JSON, top-k of ``{label, index, score}`` sorted by score, one
result per image) and a wrong answer is counted as a failure.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                 ".gif": "image/gif", ".bmp": "image/bmp"}  # fmt: skip


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    default_dir = str(Path(__file__).resolve().parents[2] / "examples")
    parser.add_argument("--payload-dir", default=default_dir, help="directory of images to send")
    parser.add_argument("--mode", choices=["raw", "json"], default="raw", help="request body form")
    parser.add_argument("--images-per-request", type=int, default=4, help="images per JSON request")
    parser.add_argument("--topk", type=int, default=5, help="predictions to ask for and check")
    parser.add_argument("--auth-header", default="", help='e.g. "Authorization: Bearer TOKEN"')
    parser.add_argument("--path", default="/predictions/resnet50", help="inference route")


def check_predictions(preds: Any, topk: int) -> str | None:
    """None when ``preds`` is a valid top-k list, else what is wrong with it."""
    if not isinstance(preds, list) or len(preds) != topk:
        return f"expected {topk} predictions, got {preds!r:.200}"
    for p in preds:
        if not (isinstance(p, dict) and isinstance(p.get("label"), str) and isinstance(p.get("index"), int)
                and isinstance(p.get("score"), float) and 0.0 <= p["score"] <= 1.0):  # fmt: skip
            return f"malformed prediction {p!r:.200}"
    scores = [p["score"] for p in preds]
    if scores != sorted(scores, reverse=True):
        return "predictions are not sorted by score"
    return None


def check_response(body: Any, topk: int, images: int | None) -> str | None:
    if not isinstance(body, dict):
        return "response is not a JSON object"
    if images is None:
        return check_predictions(body.get("predictions"), topk)
    results = body.get("results")
    if not isinstance(results, list) or len(results) != images:
        return f"expected {images} results, got {results!r:.200}"
    for r in results:
        problem = check_predictions(r.get("predictions") if isinstance(r, dict) else None, topk)
        if problem:
            return problem
    return None


class ResnetUser(HttpUser):
    wait_time = between(0, 0)  # closed loop: each user sends its next request as soon as it gets an answer

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        folder = Path(os.path.expanduser(opts.payload_dir))
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise RuntimeError(f"--payload-dir {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.payloads = [(p.read_bytes(), CONTENT_TYPES[p.suffix.lower()]) for p in files]
        self.cycle = itertools.cycle(self.payloads)
        self.topk = opts.topk
        self.mode = opts.mode
        self.per_request = opts.images_per_request
        self.path = opts.path
        self.headers: dict[str, str] = {}
        if opts.auth_header:
            name, sep, value = opts.auth_header.partition(":")
            if not sep:
                raise RuntimeError('--auth-header must look like "Name: value"')
            self.headers[name.strip()] = value.strip()

    @task
    def classify(self) -> None:
        if self.mode == "raw":
            data, ctype = next(self.cycle)
            headers = {**self.headers, "Content-Type": ctype, "X-TopK": str(self.topk)}
            expected_images = None
            body: bytes = data
        else:
            images = [next(self.cycle)[0] for _ in range(self.per_request)]
            body = json.dumps({"images": [base64.b64encode(b).decode() for b in images], "topk": self.topk}).encode()
            headers = {**self.headers, "Content-Type": "application/json"}
            expected_images = len(images)
        with self.client.post(self.path, data=body, headers=headers, catch_response=True, name=self.mode) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {resp.text[:200]}")
                return
            try:
                parsed = resp.json()
            except ValueError:
                resp.failure("response is not JSON")
                return
            problem = check_response(parsed, self.topk, expected_images)
            if problem:
                resp.failure(problem)
            else:
                resp.success()
