"""The fault suite's harness: a bounded closed-loop client on loopback, `resnet-serving serve` as a process, the
server's process tree and its memory, and one table row per fault.

The client classifies every request it sends:

* **ok**: HTTP 200 with predictions;
* **retryable**: failed, and a client may safely send it again: the connection was refused (never accepted),
  reset or closed before any response (a prediction is idempotent), HTTP 503, or TorchServe's "Worker died."
  (HTTP 500 or 507, depending on when the worker died during the request's batch);
* **failed**: every request that did not succeed, the retryable ones included;
* **lost**: accepted and never answered within the client's timeout.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tests.fixtures import images as fx
from tests.helpers import REPO, serve_command

#: `make faults` sets FAULTS=long: the same cases, more requests and longer runs.
LONG = os.environ.get("FAULTS") == "long"
#: The body every prediction in the serve fault cases sends: the example photo.
BODY = fx.PHOTO.read_bytes()


def scale(short: float, long: float) -> float:
    """A bound for `make test` (short) or `make faults` (long)."""
    return long if LONG else short


@dataclass(frozen=True)
class Outcome:
    sent_at: float
    done_at: float
    kind: str  # ok | refused | reset | status | timeout
    status: int | None = None
    detail: str = ""
    retry_after: str | None = None  # the Retry-After header of a non-200 answer

    @property
    def latency(self) -> float:
        return self.done_at - self.sent_at

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def retryable(self) -> bool:
        return self.kind in ("refused", "reset") or self.status == 503 or self.worker_died

    @property
    def worker_died(self) -> bool:
        return self.status in (500, 507) and "Worker died." in self.detail

    @property
    def lost(self) -> bool:
        return self.kind == "timeout"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values``, nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def post(session: requests.Session, url: str, body: bytes, read_timeout: float) -> Outcome:
    """One prediction request, classified (see the module's docstring)."""
    t0 = time.monotonic()
    try:
        r = session.post(url, data=body, headers={"Content-Type": "image/jpeg"}, timeout=(2.0, read_timeout))
    except requests.exceptions.ConnectTimeout:
        return Outcome(t0, time.monotonic(), "refused")
    except requests.exceptions.ReadTimeout:
        return Outcome(t0, time.monotonic(), "timeout")
    except requests.ConnectionError as e:
        refused = isinstance(e.__context__, ConnectionRefusedError) or "refused" in str(e).lower()
        return Outcome(t0, time.monotonic(), "refused" if refused else "reset")
    t1 = time.monotonic()
    if r.status_code == 200 and r.json().get("predictions"):
        return Outcome(t0, t1, "ok", 200)
    return Outcome(t0, t1, "status", r.status_code, r.text[:200], r.headers.get("Retry-After"))


class Load:
    """What every load records: one :class:`Outcome` per request, and the figures of the table."""

    def __init__(self, url: str, body: bytes, read_timeout: float) -> None:
        assert url.startswith(("http://127.0.0.1:", "http://localhost:")), "load stays on loopback"
        self.url, self.body, self.read_timeout = url, body, read_timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    def _client(self) -> None:
        raise NotImplementedError

    def _spawn(self, n: int, prefix: str) -> None:
        for i in range(n):
            t = threading.Thread(target=self._client, name=f"{prefix}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def label(self) -> str:
        raise NotImplementedError

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def wait_for(self, n_ok: int, timeout: float) -> None:
        """Block until ``n_ok`` requests have succeeded (the load is warm)."""
        end = time.monotonic() + timeout
        while sum(o.ok for o in list(self.outcomes)) < n_ok:
            assert time.monotonic() < end, f"fewer than {n_ok} successes in {timeout:.0f}s: {self.summary()}"
            time.sleep(0.05)

    @property
    def sent(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def ok_latencies(self) -> list[float]:
        return [o.latency for o in self.outcomes if o.ok]

    def ok_per_s(self) -> float:
        ok = [o for o in self.outcomes if o.ok]
        if len(ok) < 2:
            return 0.0
        return len(ok) / (max(o.done_at for o in ok) - min(o.sent_at for o in self.outcomes))

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for o in list(self.outcomes):
            key = o.kind if o.kind != "status" else f"HTTP {o.status} {o.detail!r}"
            kinds[key] = kinds.get(key, 0) + 1
        return f"{self.sent} sent: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))

    def first_ok_sent_after(self, t: float) -> Outcome | None:
        later = [o for o in self.outcomes if o.ok and o.sent_at >= t]
        return min(later, key=lambda o: o.done_at) if later else None


class ClosedLoop(Load):
    """``concurrency`` clients, each sending its next request when the previous one is answered, until
    ``max_requests`` are sent, ``max_seconds`` have passed, or :meth:`halt` is called. Loopback only."""

    def __init__(
        self,
        url: str,
        body: bytes,
        *,
        concurrency: int,
        max_requests: int,
        max_seconds: float,
        read_timeout: float = 90.0,
    ) -> None:
        assert 1 <= concurrency <= 8 or LONG, "make test keeps concurrency ≤ 8"
        super().__init__(url, body, read_timeout)
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self._sent = 0
        self._deadline = 0.0

    @property
    def label(self) -> str:
        return f"closed loop ×{self.concurrency}"

    def start(self) -> ClosedLoop:
        self._deadline = time.monotonic() + self.max_seconds
        self._spawn(self.concurrency, "load")
        return self

    def halt(self) -> None:
        """Send no new request; those in flight finish."""
        self._halt.set()

    def join(self, timeout: float | None = None) -> None:
        end = time.monotonic() + (timeout if timeout is not None else self.max_seconds + self.read_timeout + 10)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load clients did not finish"

    def _take(self) -> bool:
        with self._lock:
            if self._halt.is_set() or self._sent >= self.max_requests or time.monotonic() >= self._deadline:
                return False
            self._sent += 1
            return True

    def _client(self) -> None:
        with requests.Session() as session:
            while self._take():
                outcome = post(session, self.url, self.body, self.read_timeout)
                self._record(outcome)
                if not outcome.ok:
                    time.sleep(0.05)  # a closed loop, not a busy loop, while the server is down


class OpenLoop(Load):
    """Requests sent at a fixed ``rate`` (per second) for ``seconds``, whether or not earlier ones were answered:
    overload as a crowd of independent clients makes it. At most ``max_outstanding`` requests are in flight (the
    client's own bound); a request that finds every slot taken is sent late, and :attr:`late` counts those.
    Loopback only."""

    def __init__(
        self,
        url: str,
        body: bytes,
        *,
        rate: float,
        seconds: float,
        max_outstanding: int,
        read_timeout: float = 90.0,
    ) -> None:
        assert 0 < rate <= 400 and 1 <= max_outstanding <= 400, "a bounded client"
        super().__init__(url, body, read_timeout)
        self.rate = rate
        self.seconds = seconds
        self.max_outstanding = max_outstanding
        self.late = 0
        self._next = 0
        self._t0 = 0.0
        self.stopped_at = 0.0

    @property
    def label(self) -> str:
        return f"open loop {self.rate:.0f} req/s"

    def start(self) -> OpenLoop:
        self._t0 = time.monotonic()
        self._spawn(self.max_outstanding, "open")
        return self

    def halt(self) -> None:
        """Send no new request (those in flight finish); :attr:`stopped_at` is when sending stopped."""
        if not self._halt.is_set():
            self.stopped_at = time.monotonic()
        self._halt.set()

    def wait_sent(self) -> None:
        """Block for ``seconds`` from the start, then halt."""
        self._halt.wait(max(0.0, self._t0 + self.seconds - time.monotonic()))
        self.halt()

    def join(self) -> None:
        """Every answer is in."""
        for t in self._threads:
            t.join(self.read_timeout + 10)
        assert not any(t.is_alive() for t in self._threads), "open-loop clients did not finish"

    def _ticket(self) -> float | None:
        """The time the next request is due, or None when the run is over."""
        with self._lock:
            due = self._t0 + self._next / self.rate
            if self._halt.is_set() or due >= self._t0 + self.seconds:
                return None
            self._next += 1
            if time.monotonic() - due > 0.05:
                self.late += 1
            return due

    def _client(self) -> None:
        with requests.Session() as session:
            while (due := self._ticket()) is not None:
                wait = due - time.monotonic()
                if wait > 0 and self._halt.wait(wait):
                    return
                self._record(post(session, self.url, self.body, self.read_timeout))


# ---- the server's process tree ----------------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants that are still running (zombies excluded)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    return [p for p in procs if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def survivors(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if _running(p)]


def wait_gone(procs: list[psutil.Process], timeout: float) -> tuple[float, list[psutil.Process]]:
    """Seconds until none of ``procs`` runs, and those still running at ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not survivors(procs):
            return time.monotonic() - t0, []
        time.sleep(0.05)
    return time.monotonic() - t0, survivors(procs)


def port_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (as TorchServe does, with SO_REUSEADDR)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# ---- `resnet-serving serve` as a process ----------------------------------------------------------------
@dataclass
class Serve:
    """`resnet-serving serve --model-dir ...` on free loopback ports, its output in ``log``."""

    proc: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int]
    ready_s: float = 0.0
    extra: list[str] = field(default_factory=list)
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    @property
    def predict_url(self) -> str:
        return f"{self.url}/predictions/resnet50"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management-port']}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        procs = tree(self.proc.pid)
        self.seen.update((p.pid, p) for p in procs)  # for stop(): the tree's members, even once orphaned
        return procs

    def worker_pids(self) -> list[int]:
        return sorted(p.pid for p in self.tree() if "model_service_worker" in " ".join(_cmdline(p)))

    def java(self) -> psutil.Process:
        found = [p for p in self.tree() if p.name() == "java"]
        assert len(found) == 1, found
        return found[0]

    def stop(self) -> None:
        """End it whatever state it is in (test clean-up): SIGTERM, then SIGKILL the tree."""
        self.tree()
        procs = list(self.seen.values())
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for p in survivors(procs):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def start_serve(model_dir: Path, run: Path, *extra: str, ready_timeout: float = 300) -> Serve:
    run.mkdir(parents=True, exist_ok=True)
    log = run / "serve.log"
    # a run dir of the test's own: a SIGKILLed serve cannot remove the temporary one it would make
    command = serve_command(model_dir, "--run-dir", str(run / "run"), *extra)
    cmd, ports = command.argv, command.ports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    serve = Serve(proc, log, ports, extra=list(extra))
    deadline = time.monotonic() + ready_timeout
    try:
        while "ready in" not in serve.text():
            serve.tree()
            assert proc.poll() is None, serve.text()[-3000:]
            assert time.monotonic() < deadline, "serve not ready in time"
            time.sleep(0.25)
    except BaseException:
        serve.stop()
        raise
    serve.ready_s = float(re.search(r"ready in ([0-9.]+)s", serve.text()).group(1))  # type: ignore[union-attr]
    return serve


@contextmanager
def serving(model_dir: Path, run: Path, *extra: str) -> Iterator[Serve]:
    serve = start_serve(model_dir, run, *extra)
    try:
        yield serve
    finally:
        serve.stop()


# ---- the table ------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of `make faults`' table."""

    fault: str
    load: str
    sent: int
    failed: int
    retryable: int
    recovered: str
    memory: str
    lost: str
    #: Answered requests per second while the fault lasted, against the capacity measured before it.
    goodput: str = ""

    @classmethod
    def from_load(
        cls, fault: str, load: Load, *, recovered: str, rss: tuple[float, float], lost: str = "", goodput: str = ""
    ) -> Row:
        before, after = rss
        if before and after:
            memory = f"{after - before:+.0f} MB ({before:.0f} → {after:.0f})"
        else:
            memory = f"{before:.0f} MB → 0 (all freed)" if before else "n/a"
        n_lost = sum(o.lost for o in load.outcomes)
        return cls(
            fault=fault,
            load=load.label,
            sent=load.sent,
            failed=len(load.failed),
            retryable=sum(o.retryable for o in load.failed),
            recovered=recovered,
            memory=memory,
            lost=lost or f"{n_lost} requests",
            goodput=goodput,
        )


HEADER = (
    "fault",
    "load",
    "sent",
    "failed (retryable)",
    "goodput",
    "recovered in",
    "memory Δ (RSS of the tree)",
    "data lost",
)


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (
            r.fault,
            r.load,
            str(r.sent),
            f"{r.failed} ({r.retryable})",
            r.goodput or "n/a",
            r.recovered,
            r.memory,
            r.lost,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
