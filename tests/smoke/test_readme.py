"""The quickstart and example commands of the README and the docs pages, run as a new user would (so the docs
cannot rot).

`make serve` is started exactly as written (ports moved off 8080 through the Makefile's PORT variables, which
make reads from the environment), the example block is run with the port substituted, and the server is
stopped with SIGINT (Ctrl-C). `make test` itself is what runs this file, so it is checked for presence only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO, free_ports
from tests.helpers.docs_pages import block

pytestmark = [pytest.mark.smoke, pytest.mark.torchserve]


def test_quickstart_is_make_serve_then_make_test() -> None:
    assert block("quickstart") == ["make serve", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_readme_quickstart_serves_and_examples_work(tmp_path: Path) -> None:
    port, mport, xport, gport, gmport, oport = free_ports(6)
    env = dict(
        os.environ, PORT=str(port), MANAGEMENT_PORT=str(mport), METRICS_PORT=str(xport),
        GRPC_PORT=str(gport), GRPC_MANAGEMENT_PORT=str(gmport), MODEL_METRICS_PORT=str(oport),
    )  # fmt: skip
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            block("quickstart")[0].split(), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 420
        while "ready in" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"make serve exited early:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, "make serve not ready in time"
            time.sleep(0.5)
        printed = log.read_text(errors="replace")
        assert f"curl -s -X POST http://127.0.0.1:{port}/predictions/resnet50" in printed

        commands = [c.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for c in block("example")]
        assert len(commands) == 3
        for cmd in commands[:2]:
            r = subprocess.run(cmd, shell=True, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
            assert r.returncode == 0, r.stderr
            body = json.loads(r.stdout)
            assert body["model"] == "resnet50" and body["predictions"], body
        assert (
            len(
                json.loads(
                    subprocess.run(
                        commands[1], shell=True, cwd=REPO, capture_output=True, text=True, timeout=60, check=True
                    ).stdout
                )["predictions"]
            )
            == 2
        )  # X-TopK: 2
        # the README's one curl: the answer it shows has two predictions (X-TopK: 2)
        (curl,) = [c.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for c in block("curl")]
        r = subprocess.run(curl, shell=True, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        body = json.loads(r.stdout)
        assert body["model"] == "resnet50" and len(body["predictions"]) == 2, body
        r = subprocess.run(commands[2], shell=True, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        assert "grace_hopper.jpg" in r.stdout
        ranks = re.findall(r"│\s*(\d+)\s*│\s*[^│]+│\s*\d+\s*│\s*[0-9.]+\s*│", r.stdout)
        assert ranks == ["1", "2", "3"], r.stdout  # --topk 3 gives exactly three rows

        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert any("java" in (p.name() or "") for p in descendants), "no Java process under make serve"
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    _gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"orphans left after Ctrl-C: {[(p.pid, p.name()) for p in alive]}"
    assert "stopping TorchServe" in log.read_text(errors="replace")
