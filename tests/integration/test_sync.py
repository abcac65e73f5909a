"""`resnet-serving sync` against a real TorchServe 0.12 and a real S3 protocol endpoint (moto in server mode).

One TorchServe (management API enabled) and one moto server serve the whole module; a Syncer follows the
``stable`` channel in a background thread, polling every ``INTERVAL`` seconds, as ``serve --channel`` runs it.
Every test first promotes the version it starts from, so each also runs alone (``-k``). Clients hit the
unversioned route ``/predictions/resnet50`` from a few threads; a request fails if it gets anything but a 200
with predictions (including no answer within the client timeout).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from resnet_serving.archiver import build_archive
from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest
from resnet_serving.cli import main
from resnet_serving.errors import ManagementError
from resnet_serving.store import POLL_RETRY, Store, archive_key, open_store
from resnet_serving.sync.loop import SYNC_DIR, Syncer, SyncState, SyncStatus
from tests.fixtures import images
from tests.fixtures.mar import rewrite_archive
from tests.fixtures.moto_server import MotoS3
from tests.fixtures.torchserve import RunningTorchServe, start_torchserve
from tests.helpers import free_ports

pytestmark = [pytest.mark.torchserve, pytest.mark.s3]

INTERVAL = 1.0  # seconds between polls
MAX_BACKOFF = 4.0
LOAD_THREADS = 3
MIN_LOAD_S = 30.0
SWITCH_DEADLINE = 120.0  # generous: a switch loads ResNet50 in a new worker on a busy 2-core machine
MODEL = "resnet50"


# ---- archives ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archives(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Version -> directory with model.mar + manifest.json.

    v1, v2, v3: real archives from ``build_archive`` (random weights). v4: v3's archive relabelled as 4 (it is
    tampered with in the store, after its manifest). v5: v3's relabelled as 5, good. v6: v3's relabelled as 6
    with a ``model.pt`` that is not a state dict, so its manifest verifies but TorchServe cannot load it.
    """
    root = tmp_path_factory.mktemp("sync-archives")
    out = {"1": archive_dir}
    for version in ("2", "3"):
        build_archive(weights="random", version=version, out_dir=root / version)
        out[version] = root / version
    for version in ("4", "5"):
        rewrite_archive(out["3"], root / version, version)
        out[version] = root / version
    rewrite_archive(out["3"], root / "6", "6", state_dict=b"not a state dict: torch.load fails on this")
    out["6"] = root / "6"
    return out


# ---- load -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    started: float
    ended: float
    status: int | None
    version: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass
class Load:
    """``threads`` clients posting a JPEG to the unversioned route back to back until stopped."""

    url: str
    threads: int = LOAD_THREADS
    timeout: float = 60.0
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        body = images.jpeg()
        for i in range(self.threads):
            t = threading.Thread(target=self._client, args=(body,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _client(self, body: bytes) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                r = session.post(
                    f"{self.url}/predictions/{MODEL}",
                    data=body,
                    headers={"Content-Type": "image/jpeg"},
                    timeout=self.timeout,
                )
                data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                ok = r.status_code == 200 and bool(data.get("predictions"))
                res = Result(t0, time.monotonic(), r.status_code, data.get("version"), None if ok else r.text[:200])
            except (requests.RequestException, ValueError) as e:
                res = Result(t0, time.monotonic(), None, None, f"{type(e).__name__}: {e}")
            with self._lock:
                self.results.append(res)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.snapshot() if not r.ok]

    def versions(self) -> Counter[str | None]:
        return Counter(r.version for r in self.snapshot() if r.ok)

    def first_answer(self, version: str, after: float) -> Result | None:
        hits = [r for r in self.snapshot() if r.ok and r.version == version and r.ended >= after]
        return min(hits, key=lambda r: r.ended) if hits else None

    def wait_responses(self, n: int, timeout: float = 60.0) -> None:
        base = len(self.snapshot())
        wait_for(lambda: len(self.snapshot()) >= base + n, timeout, f"{n} responses")


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll: float = 0.1) -> None:
    """Wait on a condition with a deadline (the pause between checks is a poll interval, not a guess)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


# ---- the rig: moto + TorchServe + a background Syncer --------------------------------------------------------
@dataclass
class Rig:
    s3: MotoS3
    bucket: str
    store: Store
    ts: RunningTorchServe
    model_store: Path
    archives: dict[str, Path]
    syncer: Syncer | None = None
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/models"

    def push(self, version: str) -> None:
        if version not in self.store.list_versions(MODEL):
            d = self.archives[version]
            self.store.push(d / ARCHIVE_NAME, Manifest.load(d / MANIFEST_NAME))

    def push_tampered(self, version: str) -> None:
        """Push ``version``, then change the stored archive's bytes behind its manifest's back (idempotent)."""
        self.push(version)
        key = "models/" + archive_key(MODEL, version)
        s3 = self.s3.client()
        data = bytearray(s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        if hashlib.sha256(data).hexdigest() == self.store.read_manifest(MODEL, version).sha256:
            data[len(data) // 2] ^= 0xFF
            s3.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))

    def promote(self, version: str, channel: str = "stable") -> float:
        self.push(version)
        self.store.set_channel(MODEL, channel, version)
        return time.monotonic()

    @property
    def status(self) -> SyncStatus:
        assert self.syncer is not None
        return self.syncer.status

    def start_sync(self) -> None:
        self.stop = threading.Event()
        self.syncer = Syncer(
            self.store,
            self.ts.management,
            channel="stable",
            model_store=self.model_store,
            inference_url=self.ts.url,
            interval=INTERVAL,
            max_backoff=MAX_BACKOFF,
        )
        self.thread = threading.Thread(target=self.syncer.run, args=(self.stop,), name="sync", daemon=True)
        self.thread.start()

    def stop_sync(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=SWITCH_DEADLINE)
            assert not self.thread.is_alive()
        self.thread = None

    def serving(self) -> str:
        return self.ts.management.default_version(MODEL)

    def wait_serving(self, version: str, timeout: float = SWITCH_DEADLINE) -> SyncStatus:
        wait_for(
            lambda: self.status.current == version and self.status.state is SyncState.IN_SYNC,
            timeout,
            f"v{version} serving (sync: {self.status.line()})",
        )
        return self.status

    def ensure(self, version: str) -> None:
        """Start a test from ``version`` serving, whatever ran before."""
        self.promote(version)
        self.wait_serving(version)


@pytest.fixture(scope="module")
def rig(aws_test_env: None, archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with MotoS3() as s3:  # our own endpoint: the outage test stops it
        bucket = s3.create_bucket()
        store = open_store(f"s3://{bucket}/models", endpoint_url=s3.url, retry=POLL_RETRY)
        run_dir = tmp_path_factory.mktemp("sync-torchserve")
        ts = start_torchserve(archives["1"], run_dir, enable_model_api=True, max_batch_delay_ms=50)
        rig = Rig(s3, bucket, store, ts, run_dir / "model-store", archives)
        try:
            rig.promote("1")
            rig.start_sync()
            rig.wait_serving("1", timeout=30)
            yield rig
        finally:
            rig.stop_sync()
            ts.server.stop()


def report(title: str, load: Load, **numbers: object) -> None:
    results = load.snapshot()
    span = max(r.ended for r in results) - min(r.started for r in results)
    lines = [
        f"\n[{title}] {len(results)} requests in {span:.1f}s ({len(results) / span:.1f}/s) from {load.threads} "
        f"client threads; failed: {len(load.failures)}; by version: {dict(sorted(load.versions().items()))}",
        *(f"[{title}] {k}: {v}" for k, v in numbers.items()),
    ]
    print("\n".join(lines), file=sys.stderr)


# ---- tests --------------------------------------------------------------------------------------------------
def test_switch_under_load_v1_v2_v3(rig: Rig) -> None:
    """≥30 s of load while the channel moves v1 → v2 → v3: zero failed requests, and once a response reports
    the new version, every request sent after it does too (a clean switch, no flapping)."""
    rig.ensure("1")
    rig.push("2")
    rig.push("3")
    timings = {}
    with Load(rig.ts.url) as load:
        load.wait_responses(10)
        for old, new in (("1", "2"), ("2", "3")):
            promoted = rig.promote(new)
            status = rig.wait_serving(new)
            wait_for(lambda n=new, p=promoted: load.first_answer(n, after=p), 30, f"a response from v{new}")
            first = load.first_answer(new, after=promoted)
            assert first is not None and status.last_switch is not None
            timing = status.last_switch
            seen_after = first.ended - promoted
            # Responses report the new version within the poll interval plus the switch (fetch + load) time, plus
            # the drain (each client first gets its answer from the old version) and one batch on the new one.
            assert seen_after <= INTERVAL + timing.switch_s + timing.drain_s + 5.0, (seen_after, timing)
            load.wait_responses(5)
            late_old = [r for r in load.snapshot() if r.started > first.ended and r.version == old]
            assert late_old == [], f"{len(late_old)} requests sent after v{new} answered still got v{old}"
            timings[f"v{old}→v{new}"] = (seen_after, timing)
        wait_for(lambda: time.monotonic() - load.started >= MIN_LOAD_S, MIN_LOAD_S + 5, "the minimum load time")

    assert load.failures == [], load.failures[:5]
    assert rig.ts.management.versions(MODEL) == ["3"]  # v1 and v2 drained and unregistered
    assert set(load.versions()) == {"1", "2", "3"}
    report(
        "switch under load",
        load,
        **{
            name: (
                f"first v{t.to_version} response {seen:.1f}s after promote; switch {t.switch_s:.1f}s "
                f"(fetch {t.fetch_s:.1f}s, register+load {t.register_s:.1f}s, answer {t.ready_s:.1f}s), "
                f"drain+unregister {t.drain_s:.2f}s"
            )
            for name, (seen, t) in timings.items()
        },
    )


def test_corrupt_v4_is_refused_and_not_retried_then_v5_works(rig: Rig) -> None:
    rig.ensure("3")
    rig.push_tampered("4")

    with Load(rig.ts.url, threads=2) as load:
        load.wait_responses(5)
        attempts = rig.status.attempts
        rig.promote("4")
        wait_for(lambda: "4" in rig.status.failed, SWITCH_DEADLINE, "v4 recorded as failed")
        status = rig.status
        assert status.current == "3" and status.state is SyncState.HOLDING
        assert "sha256" in (status.last_error or "") and status.attempts == attempts + 1
        polls = status.polls
        wait_for(lambda: rig.status.polls >= polls + 3, 30, "three more polls")
        assert rig.status.attempts == attempts + 1 and rig.status.failed == {"4"}  # not fetched again
        assert rig.serving() == "3" and rig.ts.management.versions(MODEL) == ["3"]
        assert not (rig.model_store / "resnet50-v4.mar").exists()
        load.wait_responses(5)
    assert load.failures == [], load.failures[:5]
    assert set(load.versions()) == {"3"}
    report("corrupt v4", load, failed=sorted(status.failed), last_error=status.last_error)

    rig.promote("5")  # a good version after the bad one: switched to as usual
    rig.wait_serving("5")
    assert rig.status.failed == frozenset() and rig.ts.management.versions(MODEL) == ["5"]


def test_v6_that_verifies_but_does_not_load_is_failed_and_cleaned_up(rig: Rig) -> None:
    rig.ensure("5")
    with Load(rig.ts.url, threads=2) as load:
        load.wait_responses(5)
        rig.promote("6")
        wait_for(lambda: "6" in rig.status.failed, SWITCH_DEADLINE, "v6 recorded as failed")
        status = rig.status
        assert status.current == "5" and "could not load v6" in (status.last_error or ""), status
        assert rig.serving() == "5" and rig.ts.management.versions(MODEL) == ["5"]
        assert not (rig.model_store / "resnet50-v6.mar").exists()
        assert not (rig.model_store / SYNC_DIR / MODEL / "6").exists()
        load.wait_responses(5)
    assert load.failures == [], load.failures[:5]
    assert set(load.versions()) == {"5"}
    report("v6 does not load", load, last_error=status.last_error)


def test_store_outage_keeps_serving_and_a_move_is_picked_up_after(rig: Rig) -> None:
    rig.ensure("5")
    with Load(rig.ts.url, threads=2) as load:
        load.wait_responses(5)
        rig.s3.stop()
        try:
            wait_for(
                lambda: rig.status.state is SyncState.STORE_UNAVAILABLE and rig.status.consecutive_errors >= 3,
                60,
                "three failed polls",
            )
            down = rig.status
            assert down.current == "5" and down.next_poll_s > INTERVAL  # backing off
            load.wait_responses(5)
        finally:
            rig.s3.start()
        wait_for(lambda: rig.status.state is SyncState.IN_SYNC, MAX_BACKOFF + 30, "sync to reach the store again")
        load.wait_responses(3)
    assert load.failures == [], load.failures[:5]
    assert set(load.versions()) == {"5"}
    rig.promote("3")  # a channel move after the outage is picked up
    rig.wait_serving("3")
    report(
        "store outage",
        load,
        during_outage=f"{down.state.value}, {down.consecutive_errors} failed polls, next in {down.next_poll_s}s",
        picked_up_after=f"{rig.status.last_switch_s:.1f}s switch",
    )


def test_torchserve_unregister_does_not_drain(rig: Rig) -> None:
    """Why sync drains before it unregisters: TorchServe 0.12 answers the requests queued for a version it
    unregisters with nothing at all (measured here; the clients time out), and fails the batch in its worker.
    The unregister itself sometimes answers 500 (it races that batch) yet removes the version: seen in CI."""
    rig.stop_sync()  # sync would remove the extra version as a stray
    serving = rig.serving()
    spare = "2" if serving != "2" else "1"
    name = "resnet50-spare.mar"
    try:
        os.link(rig.archives[spare] / ARCHIVE_NAME, rig.model_store / name)
        m = rig.ts.management
        m.register(name, model=MODEL, workers=1, batch_size=8, max_batch_delay_ms=50)
        results: list[int | str] = []

        def send() -> None:
            try:
                r = requests.post(
                    f"{rig.ts.url}/predictions/{MODEL}/{spare}",
                    data=images.jpeg(),
                    timeout=10,
                    headers={"Content-Type": "image/jpeg"},
                )
                results.append(r.status_code)
            except requests.RequestException as e:
                results.append(type(e).__name__)

        clients = [threading.Thread(target=send) for _ in range(12)]
        for c in clients:
            c.start()
        wait_for(lambda: m.pending_requests(MODEL, spare) > 0, 10, "queued requests", poll=0.01)
        try:
            m.unregister(MODEL, spare)
            answer = "200"
        except ManagementError as e:
            # The unregister races the worker's batch: TorchServe 0.12 sometimes answers 500 (NullPointerException
            # or ConcurrentModificationException) and removes the version anyway. Sync tolerates exactly that.
            assert e.status == 500, e
            answer = f"500 ({e.message})"
            if spare in m.versions(MODEL):  # what sync does on its next poll
                m.unregister(MODEL, spare)
                answer += ", then 200 to a second DELETE"
        assert spare not in m.versions(MODEL), f"unregister answered {answer} and left v{spare} registered"
        for c in clients:
            c.join()
        lost = [r for r in results if r != 200]
        assert lost, "TorchServe drained by itself: the drain in resnet_serving.sync.loop could be simplified"
        print(
            f"\n[unregister without drain] DELETE answered {answer}; {len(lost)} of {len(results)} requests lost: "
            f"{Counter(results)}"
        )
    finally:
        (rig.model_store / name).unlink(missing_ok=True)
        rig.start_sync()
        rig.wait_serving(serving)


def test_cli_sync_once(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    rig.stop_sync()  # `sync --once` is the only syncer here
    start = rig.serving()
    other = "5" if start != "5" else "3"
    rig.promote(start)
    argv = [
        "sync",
        "--once",
        "--store", rig.uri,
        "--channel", "stable",
        "--torchserve", rig.ts.management.url,
        "--inference-url", rig.ts.url,
        "--model-store", str(rig.model_store),
        "--endpoint-url", rig.s3.url,
    ]  # fmt: skip
    try:
        assert main(argv) == 0
        assert f"v{start} serves" in capsys.readouterr().out
        rig.promote(other)
        assert main(argv) == 0
        assert rig.serving() == other and rig.ts.management.versions(MODEL) == [other]
        rig.push_tampered("4")
        rig.promote("4")
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "v4 failed" in err and "sha256" in err and f"v{other} keeps serving" in err, err
        assert rig.serving() == other
    finally:
        rig.promote(rig.serving())
        rig.start_sync()
        rig.wait_serving(rig.serving())


def _families(port: int) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return list(text_string_to_metric_families(text))


def scrape_ok_counts(port: int) -> dict[str, float]:
    """resnet_serving_request_seconds_count{code="200"} by version."""
    return {
        s.labels["version"]: s.value
        for fam in _families(port)
        for s in fam.samples
        if s.name == "resnet_serving_request_seconds_count" and s.labels["code"] == "200"
    }


def served_versions(port: int) -> set[str]:
    return {s.labels["version"] for f in _families(port) for s in f.samples if s.name == "resnet_serving_model_info"}


def test_serve_follows_a_channel(rig: Rig, tmp_path: Path) -> None:
    """`serve --store URI --channel C` starts on the channel's version and switches when it moves."""
    rig.promote("1", channel="canary")
    port, mport, xport, oport = free_ports(4)
    env = dict(os.environ, AWS_ENDPOINT_URL=rig.s3.url)
    cmd = [
        sys.executable, "-m", "resnet_serving.cli", "serve",
        "--store", rig.uri, "--channel", "canary", "--sync-interval", str(INTERVAL),
        "--port", str(port), "--management-port", str(mport), "--metrics-port", str(xport),
        "--model-metrics-port", str(oport),
        "--batch-size", "4", "--max-batch-delay-ms", "20", "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers(version: str) -> bool:
        try:
            r = requests.post(f"{url}/predictions/{MODEL}", data=images.jpeg(), timeout=30)
        except requests.RequestException:
            return False
        return r.status_code == 200 and r.json().get("version") == version

    try:
        wait_for(lambda: answers("1") or proc.poll() is not None, 240, "serve to answer")
        assert proc.poll() is None, log.read_text()
        rig.promote("2", channel="canary")
        wait_for(lambda: answers("2") or proc.poll() is not None, SWITCH_DEADLINE, "serve to switch to v2")
        assert proc.poll() is None, log.read_text()
        # our /metrics: both versions' series appear, then only v2 is served and v1's counts stop growing
        first = scrape_ok_counts(oport)
        assert first.get("1", 0) >= 1 and first.get("2", 0) >= 1, first
        wait_for(lambda: served_versions(oport) == {"2"}, SWITCH_DEADLINE, "v1's workers to go from model_info")
        before = scrape_ok_counts(oport)
        assert all(answers("2") for _ in range(3))
        after = scrape_ok_counts(oport)
        assert after["1"] == before["1"] and after["2"] == before["2"] + 3, (before, after)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "following channel canary" in text and "Upgrade from v1 to v2" in text, text
