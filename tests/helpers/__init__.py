"""Helpers shared by the tests (no fixtures here: those live in conftest.py files and tests/fixtures/).

Test modules (``test_*.py``) and conftest.py files import helpers from this package and its modules, never from
one another (tests/unit/test_tests_layout.py checks it). The modules beside this one serve one suite each
(``chart``, ``faults``, ...); what several suites use lives here.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


#: serve's port flags, each given a free loopback port by :func:`serve_command`.
SERVE_PORT_FLAGS = (
    "port",
    "management-port",
    "metrics-port",
    "model-metrics-port",
    "grpc-inference-port",
    "grpc-management-port",
)


@dataclass(frozen=True)
class ServeCommand:
    argv: list[str]
    ports: dict[str, int]  # flag name (without --) -> port

    @property
    def port(self) -> int:
        return self.ports["port"]

    @property
    def metrics_port(self) -> int:
        return self.ports["metrics-port"]

    @property
    def model_metrics_port(self) -> int:
        """Our own /metrics (resnet_serving_* series), beside TorchServe's."""
        return self.ports["model-metrics-port"]


def serve_command(model_dir: Path, *extra: str) -> ServeCommand:
    """`resnet-serving serve --model-dir DIR [EXTRA...]` on free loopback ports."""
    ports = dict(zip(SERVE_PORT_FLAGS, free_ports(len(SERVE_PORT_FLAGS)), strict=True))
    argv = [sys.executable, "-m", "resnet_serving", "serve", "--model-dir", str(model_dir)]
    for flag, port in ports.items():
        argv += [f"--{flag}", str(port)]
    return ServeCommand([*argv, *extra], ports)


def wait_until_serving(proc: subprocess.Popen[bytes], log: Path, timeout: float = 300.0) -> None:
    """Until `serve` prints its ready line: it waits for a real prediction, not for /ping."""
    deadline = time.monotonic() + timeout
    while "ready in" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "serve not ready in time"
        time.sleep(0.5)


@contextmanager
def running_serve(argv: Sequence[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`serve` started with ``argv`` (stdout and stderr to ``log``), ready, and SIGTERMed on leaving."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(proc, log)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)
