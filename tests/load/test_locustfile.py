"""tests/load/locustfile.py driven by the real locust (headless, bounded in time), on loopback only.

locust monkey-patches the standard library (gevent) on import, so it runs in its own process here.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.http_server import CannedHandler, canned_server
from tests.fixtures.torchserve import RunningTorchServe
from tests.helpers import REPO

LOCUSTFILE = REPO / "tests" / "load" / "locustfile.py"


def run_locust(host: str, tmp: Path, *extra: str, seconds: int = 6) -> tuple[int, dict[str, str], str]:
    prefix = tmp / "run"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "-u", "2", "-r", "2", "-t", f"{seconds}s", "--host", host, "--csv", str(prefix), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 90, check=False)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    return proc.returncode, rows["Aggregated"], proc.stderr + proc.stdout


def test_raw_mode_against_real_torchserve(torchserve: RunningTorchServe, tmp_path: Path) -> None:
    rc, agg, out = run_locust(torchserve.url, tmp_path, "--mode", "raw", "--topk", "3")
    assert int(agg["Request Count"]) > 0, out[-2000:]
    assert int(agg["Failure Count"]) == 0, out[-2000:]
    assert rc == 0


def test_json_mode_with_payload_dir_and_auth_header(torchserve: RunningTorchServe, tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    from tests.fixtures import images as fx

    (payloads / "a.jpg").write_bytes(fx.jpeg(120, 100))
    (payloads / "b.png").write_bytes(fx.png(90, 90))
    (payloads / "notes.txt").write_text("ignored: not an image")
    rc, agg, out = run_locust(
        torchserve.url, tmp_path, "--mode", "json", "--images-per-request", "3", "--topk", "2",
        "--payload-dir", str(payloads), "--auth-header", "Authorization: Bearer test-token",
    )  # fmt: skip
    assert int(agg["Request Count"]) > 0 and int(agg["Failure Count"]) == 0, out[-2000:]
    assert rc == 0


class _WrongAnswers(CannedHandler):
    """A server that answers 200 with a wrong body: what the locustfile must count as failures."""

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        return 200, json.dumps({"predictions": [{"label": "x", "index": 1, "score": 0.1}]}).encode()  # 1, not 5


@pytest.fixture
def wrong_server() -> Iterator[str]:
    with canned_server(_WrongAnswers) as url:
        yield url


def test_wrong_answers_count_as_failures(wrong_server: str, tmp_path: Path) -> None:
    rc, agg, out = run_locust(wrong_server, tmp_path, "--mode", "raw", "--topk", "5", seconds=3)
    requests_made = int(agg["Request Count"])
    assert requests_made > 0, out[-2000:]
    assert int(agg["Failure Count"]) == requests_made
    assert rc == 1  # locust's exit code when any request failed
