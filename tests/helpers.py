"""Helpers shared by the tests (no fixtures here: those live in conftest.py files and tests/fixtures/)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


@dataclass(frozen=True)
class ServeCommand:
    argv: list[str]
    port: int
    metrics_port: int
    model_metrics_port: int  # our own /metrics (resnet_serving_* series), beside TorchServe's


def serve_command(model_dir: Path) -> ServeCommand:
    """`resnet-serving serve --model-dir DIR` on free loopback ports."""
    port, mport, xport, gport, gmport, oport = free_ports(6)
    argv = [
        sys.executable, "-m", "resnet_serving", "serve", "--model-dir", str(model_dir),
        "--port", str(port), "--management-port", str(mport), "--metrics-port", str(xport),
        "--grpc-inference-port", str(gport), "--grpc-management-port", str(gmport),
        "--model-metrics-port", str(oport),
    ]  # fmt: skip
    return ServeCommand(argv, port, xport, oport)


def wait_until_serving(proc: subprocess.Popen[bytes], log: Path, timeout: float = 300.0) -> None:
    """Until `serve` prints its ready line: it waits for a real prediction, not for /ping."""
    deadline = time.monotonic() + timeout
    while "ready in" not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "serve not ready in time"
        time.sleep(0.5)
