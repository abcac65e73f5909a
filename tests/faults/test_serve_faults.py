"""Faults against a real TorchServe started by `resnet-serving serve`, each under a bounded closed-loop load on
loopback: a worker SIGKILLed mid-batch, the Java front end SIGKILLed, SIGTERM under load, and `serve` itself
SIGKILLed. Each case adds its row to the table that `make faults` prints (see tests/helpers/faults.py for how
requests are classified)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from resnet_serving.torchserve.management import ManagementClient
from tests.helpers.faults import (
    BODY,
    LONG,
    ClosedLoop,
    Row,
    port_free,
    rss_mb,
    scale,
    serving,
    survivors,
    wait_gone,
)

pytestmark = pytest.mark.torchserve

#: Requests in one batch, and more clients than that: requests wait in TorchServe's queue behind the batch.
BATCH = 4
CONCURRENCY = int(scale(6, 8))
#: serve, with one worker (so a killed worker is the whole model) batching BATCH requests.
ONE_WORKER = ("--workers", "1", "--threads", "1", "--batch-size", str(BATCH), "--max-batch-delay-ms", "20")


def load_for(url: str, *, requests: float, seconds: float) -> ClosedLoop:
    return ClosedLoop(url, BODY, concurrency=CONCURRENCY, max_requests=int(requests), max_seconds=seconds)


def in_flight_at(load: ClosedLoop, t: float) -> int:
    return sum(1 for o in load.outcomes if o.sent_at < t < o.done_at)


def test_worker_sigkill_mid_batch_fails_only_that_batch(
    archive_dir: Path, tmp_path: Path, fault_table: list[Row]
) -> None:
    """Only the batch inside the killed worker fails (TorchServe answers it 'Worker died.'); the requests
    queued behind it are answered once TorchServe has restarted the worker."""
    kills = int(scale(1, 5))
    with serving(archive_dir, tmp_path, *ONE_WORKER) as serve:
        management = ManagementClient(serve.management_url, timeout=10)
        load = load_for(serve.predict_url, requests=scale(400, 5000), seconds=scale(120, 500)).start()
        load.wait_for(2 * CONCURRENCY, timeout=scale(90, 300))
        rss_before = rss_mb(serve.tree())
        java_before = rss_mb([serve.java()])
        recoveries: list[float] = []
        for _ in range(kills):
            before = management.worker_pids("resnet50")
            assert len(before) == 1
            killed_at = time.monotonic()
            os.kill(before[0], signal.SIGKILL)
            # recovered: a request sent after the kill is answered (the new worker serves)
            while (first := load.first_ok_sent_after(killed_at)) is None:
                assert time.monotonic() - killed_at < 90, f"no recovery: {load.summary()}"
                time.sleep(0.05)
            recoveries.append(first.done_at - killed_at)
            after = management.worker_pids("resnet50")
            assert len(after) == 1 and after != before, (before, after)
            ok_now = sum(o.ok for o in load.outcomes)
            # throughput is back, not one lucky answer
            load.wait_for(ok_now + int(scale(CONCURRENCY, 200)), timeout=scale(120, 300))
        load.halt()
        load.join()
        rss_after = rss_mb(serve.tree())
        java_after = rss_mb([serve.java()])
    row = Row.from_load(
        f"worker SIGKILLed mid-batch ×{kills} (1 worker, batch {BATCH})",
        load,
        recovered=" / ".join(f"{r:.1f} s" for r in recoveries),
        rss=(rss_before, rss_after),
    )
    row.memory += f", Java {java_after - java_before:+.0f} MB"
    fault_table.append(row)
    assert len(load.failed) <= kills * BATCH, load.summary()
    assert all(o.worker_died for o in load.failed), load.summary()
    assert not any(o.lost for o in load.outcomes), load.summary()


def test_java_sigkill_serve_exits_nonzero_and_leaves_no_orphans(
    archive_dir: Path, tmp_path: Path, fault_table: list[Row]
) -> None:
    """`serve` notices the front end's death, exits 1 within seconds, and stops the workers (the chart's liveness
    probe or the supervisor then restarts the container)."""
    with serving(archive_dir, tmp_path, *ONE_WORKER) as serve:
        load = load_for(serve.predict_url, requests=scale(200, 2000), seconds=scale(60, 300)).start()
        load.wait_for(int(scale(2 * CONCURRENCY, 300)), timeout=scale(120, 300))
        procs = serve.tree()
        rss_before = rss_mb(procs)
        assert serve.worker_pids()
        killed_at = time.monotonic()
        serve.java().kill()
        load.halt()  # a supervisor takes the pod out of service: the row counts the requests the kill caught
        rc = serve.proc.wait(timeout=30)
        exited_s = time.monotonic() - killed_at
        load.join()
        gone_s, left = wait_gone(procs, timeout=10)
        log = serve.text()
    fault_table.append(
        Row.from_load(
            "Java front end SIGKILLed",
            load,
            recovered=f"serve exits 1 after {exited_s:.1f} s, tree gone after {exited_s + gone_s:.1f} s",
            rss=(rss_before, rss_mb(survivors(procs))),
        )
    )
    assert rc == 1, log[-2000:]
    assert exited_s < 10
    assert "TorchServe exited unexpectedly" in log
    assert left == [], f"orphans: {[(p.pid, p.name()) for p in left]}"
    # what was in flight was reset, what came later refused: a client may retry each elsewhere; none hangs
    assert all(o.retryable for o in load.failed), load.summary()
    assert not any(o.lost for o in load.outcomes), load.summary()
    assert len(load.failed) <= CONCURRENCY, "only the requests in flight at the kill may fail"


@pytest.mark.parametrize(
    "drain",
    [
        pytest.param(True, id="drain"),
        pytest.param(
            False,
            id="no-drain",
            marks=pytest.mark.skipif(not LONG, reason="make faults only: TorchServe's own SIGTERM, for the table"),
        ),
    ],
)
def test_sigterm_under_load_answers_every_accepted_request(
    archive_dir: Path, tmp_path: Path, fault_table: list[Row], drain: bool
) -> None:
    """SIGTERM while every client has a request in flight: the clients send nothing new (the pod has left the
    Service), and every request accepted before the signal is answered 200. TorchServe 0.12 alone resets them
    (``--drain-timeout 0``); `serve` drains first."""
    extra = () if drain else ("--drain-timeout", "0")
    with serving(archive_dir, tmp_path, *ONE_WORKER, *extra) as serve:
        load = load_for(serve.predict_url, requests=scale(200, 2000), seconds=scale(60, 300)).start()
        load.wait_for(int(scale(2 * CONCURRENCY, 300)), timeout=scale(150, 300))
        procs = serve.tree()
        rss_before = rss_mb(procs)
        signalled = time.monotonic()
        serve.proc.send_signal(signal.SIGTERM)
        load.halt()
        rc = serve.proc.wait(timeout=60)
        stopped_s = time.monotonic() - signalled
        load.join()
        _gone_s, left = wait_gone(procs, timeout=10)
        log = serve.text()
    accepted = in_flight_at(load, signalled)
    fault_table.append(
        Row.from_load(
            f"SIGTERM under load ({'serve drains' if drain else 'no drain: TorchServe alone'})",
            load,
            recovered=f"{accepted} in flight; serve exits 0 after {stopped_s:.1f} s",
            rss=(rss_before, rss_mb(survivors(procs))),
        )
    )
    assert rc == 0, log[-2000:]
    assert left == [], f"orphans: {[(p.pid, p.name()) for p in left]}"
    assert accepted >= 1, "the signal found no request in flight"
    assert not any(o.lost for o in load.outcomes), load.summary()
    if drain:
        assert "drained in" in log, log[-2000:]
        assert load.failed == [], load.summary()
    else:
        assert all(o.retryable for o in load.failed), load.summary()


def test_serve_sigkill_leaves_nothing_behind(archive_dir: Path, tmp_path: Path, fault_table: list[Row]) -> None:
    """`serve` SIGKILLed (no clean-up of its own can run): the launcher dies of its parent-death signal, the
    watchdog stops Java and the workers, and every port is free again within seconds."""
    with serving(archive_dir, tmp_path, *ONE_WORKER) as serve:
        load = load_for(serve.predict_url, requests=scale(200, 2000), seconds=scale(60, 300)).start()
        load.wait_for(int(scale(2 * CONCURRENCY, 300)), timeout=scale(120, 300))
        procs = serve.tree()
        assert {"java", "torchserve"} <= {p.name() for p in procs} and serve.worker_pids()
        assert any("resnet_serving.torchserve.watchdog" in " ".join(p.cmdline()) for p in procs)
        rss_before = rss_mb(procs)
        killed_at = time.monotonic()
        serve.proc.kill()
        load.halt()  # as above: count the requests in flight at the kill, not those refused later
        serve.proc.wait(timeout=10)
        gone_s, left = wait_gone(procs, timeout=15)
        while not all(port_free(p) for p in serve.ports.values()) and time.monotonic() - killed_at < 15:
            time.sleep(0.05)
        free_s = time.monotonic() - killed_at
        busy = [name for name, p in serve.ports.items() if not port_free(p)]
        load.halt()
        load.join()
    fault_table.append(
        Row.from_load(
            "`serve` SIGKILLed",
            load,
            recovered=f"tree gone after {gone_s:.1f} s, ports free after {free_s:.1f} s",
            rss=(rss_before, rss_mb(survivors(procs))),
        )
    )
    assert left == [], f"outlived serve: {[(p.pid, p.name(), p.cmdline()[:3]) for p in left]}"
    assert gone_s < 10
    assert busy == [], f"ports still bound: {busy}"
    assert not any(o.lost for o in load.outcomes), load.summary()
    assert all(o.retryable for o in load.failed), load.summary()
