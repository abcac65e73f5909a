"""S3 faults between the store and a real S3 endpoint (moto server), injected by tests/helpers/s3_proxy.py.

The store gets the proxy's URL as its endpoint and cannot tell it from S3. Shown here, each with its figure:
``fetch`` and ``sync`` retry throttling, 5xx answers, resets and truncated bodies with backoff, in one retry
layer (store/retry.py); they never install a truncated or unverified archive; a ``push`` cut at any byte leaves
nothing that ``versions`` lists; racing ``promote``s leave the channel at one of their values, never a corrupt
pointer. The fixtures live in this module rather than a conftest: tests/faults/ is shared with the serve faults.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.artifact.layout import ARCHIVE_NAME, MANIFEST_NAME
from resnet_serving.artifact.manifest import Manifest, sha256_file
from resnet_serving.cli import main
from resnet_serving.errors import IntegrityError, NotFound, StoreError, StoreUnavailable
from resnet_serving.store import RetryPolicy, Store, channel_key
from resnet_serving.store.s3 import S3Backend, make_client
from resnet_serving.sync.loop import SYNC_DIR, Syncer, SyncState
from tests.fixtures.archives import fake_archive
from tests.fixtures.moto_server import MotoS3
from tests.helpers.s3_proxy import Fault, S3FaultProxy, op
from tests.helpers.sync import FakeClock, FakeTorchServe

MiB = 1 << 20
PREFIX = "models"
#: FAULTS_LONG=1 (for `make faults`): many more cut points, every byte of a promote.
LONG = os.environ.get("FAULTS_LONG") == "1"
#: Short waits, so a case takes seconds; the curve is the production one (capped exponential, full jitter).
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.4)


class Sleeps(list[float]):
    """The store's sleep function: records each backoff, then really waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(seconds)


_CLIENTS: dict[str, Any] = {}


def client_for(url: str) -> Any:
    """One boto3 client per endpoint (clients are thread-safe, and building one costs more than a request)."""
    if url not in _CLIENTS:
        _CLIENTS[url] = make_client(url)
    return _CLIENTS[url]


def via(proxy: S3FaultProxy, bucket: str, retry: RetryPolicy = FAST, prefix: str = PREFIX) -> tuple[Store, Sleeps]:
    sleeps = Sleeps()
    backend = S3Backend(bucket, prefix, client=client_for(proxy.url), retry=retry, sleep=sleeps)
    return Store(backend), sleeps


def direct(moto_s3: MotoS3, bucket: str, prefix: str = PREFIX) -> Store:
    return Store(S3Backend(bucket, prefix, client=client_for(moto_s3.url)))


def archive_of(directory: Path, version: str, content: bytes) -> tuple[Path, Manifest]:
    """An archive with the given bytes and its manifest (FakeTorchServe registers ``version:<V>`` archives)."""
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / ARCHIVE_NAME
    archive.write_bytes(content)
    _, template = fake_archive(directory / "template", version, 16)
    manifest = Manifest(**{**template.__dict__, "sha256": sha256_file(archive), "size": len(content)})
    return archive, manifest


def untouched(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


# ---- fetch: retries with backoff ------------------------------------------------------------------------
ARCHIVE_GET = op("GET", r"/model\.mar$")

RETRIED = [
    ("503 SlowDown on the manifest", Fault("status", op("GET", "manifest.json$"), times=2, status=503)),
    ("500 InternalError on the archive's HEAD", Fault("status", op("HEAD", "model.mar$"), times=2, status=500,
                                                       code="InternalError")),
    ("reset on the archive GET", Fault("reset", ARCHIVE_GET, times=2)),
    ("body cut at 30% and reset", Fault("truncate", ARCHIVE_GET, times=2, keep=0.3)),
    ("body cut at its first byte", Fault("truncate", ARCHIVE_GET, times=1, keep=1)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fault"), RETRIED, ids=[r[0] for r in RETRIED])
@pytest.mark.parametrize("size", [256 * 1024, 11 * MiB], ids=["single-get", "ranged-gets"])
def test_fetch_retries_transient_faults_with_backoff(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path, name: str, fault: Fault, size: int
) -> None:
    archive, manifest = fake_archive(tmp_path / "src", "1", size)
    direct(moto_s3, bucket).push(archive, manifest)
    store, sleeps = via(proxy, bucket)
    fault = proxy.add(dataclasses.replace(fault))  # a fresh copy: a fault counts down as it is met
    armed = fault.times
    start = time.monotonic()
    path = store.fetch("resnet50", "1", tmp_path / "dest")
    took = time.monotonic() - start
    assert path.read_bytes() == archive.read_bytes()
    assert fault.hits == armed and fault.times == 0  # every injected fault was met, and retried past
    # one backoff per failed attempt: the ranged GETs of one attempt run in parallel, so two cut parts can share one
    assert 1 <= len(sleeps) <= fault.hits, f"one backoff per failed attempt: {sleeps}"
    assert all(0 <= s <= FAST.max_delay for s in sleeps)
    assert untouched(tmp_path / "dest") == [MANIFEST_NAME, ARCHIVE_NAME]  # no temp file left behind
    print(f"FIGURE fetch {size // 1024} KiB, {name}: {fault.hits} faults, {len(proxy.log)} requests, "
          f"backoff {sum(sleeps):.2f} s, {took:.2f} s in all")  # fmt: skip


def test_fetch_under_latency_succeeds(moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    archive, manifest = fake_archive(tmp_path / "src", "1", 11 * MiB)
    direct(moto_s3, bucket).push(archive, manifest)
    store, sleeps = via(proxy, bucket)
    proxy.add(Fault("latency", op("*"), times=-1, seconds=0.3))
    start = time.monotonic()
    assert store.fetch("resnet50", "1", tmp_path / "dest").read_bytes() == archive.read_bytes()
    took = time.monotonic() - start
    assert sleeps == [] and took >= 0.3 * 3  # manifest, HEAD, and the ranged GETs each waited; none was retried
    print(f"FIGURE fetch 11 MiB with 300 ms per request: {len(proxy.log)} requests, {took:.2f} s")


def test_fetch_gives_up_after_the_policy_and_installs_nothing(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """Every archive GET cut: a transient error after FAST.attempts tries; the installed v1 stays as it was."""
    s3 = direct(moto_s3, bucket)
    for v in ("1", "2"):
        archive, manifest = fake_archive(tmp_path / f"src{v}", v, 256 * 1024)
        s3.push(archive, manifest)
    dest = tmp_path / "dest"
    store, sleeps = via(proxy, bucket)
    store.fetch("resnet50", "1", dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    proxy.add(Fault("truncate", ARCHIVE_GET, times=-1, keep=0.5))
    with pytest.raises(StoreUnavailable, match=f"gave up after {FAST.attempts} attempts") as exc:
        store.fetch("resnet50", "2", dest)
    assert exc.value.transient
    assert len(sleeps) == FAST.attempts - 1
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before  # v1, whole, and no temp file


def test_a_short_body_with_a_matching_length_is_caught_by_the_transport_checksum_and_retried(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """Content-Length rewritten to the cut: HTTP cannot tell, S3's CRC (validated by botocore) can, and the
    fetch retries it as a transfer error."""
    archive, manifest = fake_archive(tmp_path / "src", "1", 256 * 1024)
    direct(moto_s3, bucket).push(archive, manifest)
    store, sleeps = via(proxy, bucket)
    fault = proxy.add(Fault("truncate", ARCHIVE_GET, times=1, keep=0.5, lie=True))
    assert store.fetch("resnet50", "1", tmp_path / "dest").read_bytes() == archive.read_bytes()
    assert fault.hits == 1 and len(sleeps) == 1


def test_a_short_body_no_transport_can_detect_fails_the_sha256_and_is_not_installed(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """Length rewritten and S3's checksum headers dropped: only the manifest's sha256 is left, and it refuses it."""
    archive, manifest = fake_archive(tmp_path / "src", "1", 256 * 1024)
    direct(moto_s3, bucket).push(archive, manifest)
    store, _ = via(proxy, bucket)
    proxy.add(Fault("truncate", ARCHIVE_GET, times=1, keep=0.5, lie=True, strip_checksums=True))
    with pytest.raises(IntegrityError, match=r"sha256|bytes"):
        store.fetch("resnet50", "1", tmp_path / "dest")
    assert untouched(tmp_path / "dest") == []
    assert main(["fetch", "--store", f"s3://{bucket}/{PREFIX}", "--endpoint-url", proxy.url, "--version", "1",
                 "--dest", str(tmp_path / "dest")]) == 0  # fmt: skip
    assert (tmp_path / "dest" / ARCHIVE_NAME).read_bytes() == archive.read_bytes()


# ---- sync: the same faults during a poll ------------------------------------------------------------------
def syncer(store: Store, model_store: Path) -> tuple[Syncer, FakeTorchServe]:
    """A Syncer on the real store (through the proxy) and a fake TorchServe (this file tests the store side; the
    TorchServe side runs for real in tests/integration/test_sync.py)."""
    model_store.mkdir(parents=True, exist_ok=True)
    (model_store / "resnet50.mar").write_text("version:1")
    ts = FakeTorchServe(model_store)
    s = Syncer(store, ts, channel="stable", model_store=model_store, inference_url="http://127.0.0.1:1",
               interval=1.0, max_backoff=8.0, prober=ts.probe, clock=FakeClock())  # fmt: skip
    return s, ts


def push_v1_v2(moto_s3: MotoS3, bucket: str, tmp_path: Path) -> bytes:
    """Archives ``version:1`` and ``version:2`` (what FakeTorchServe registers), stable → v2."""
    s3 = direct(moto_s3, bucket)
    for v in ("1", "2"):
        s3.push(*archive_of(tmp_path / f"src{v}", v, f"version:{v}".encode()))
    s3.set_channel("resnet50", "stable", "2")
    return (tmp_path / "src2" / ARCHIVE_NAME).read_bytes()


def test_sync_retries_throttling_and_cut_bodies_within_one_poll(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    v2 = push_v1_v2(moto_s3, bucket, tmp_path)
    store, sleeps = via(proxy, bucket)
    s, ts = syncer(store, tmp_path / "model-store")
    faults = [
        proxy.add(Fault("status", op("GET", "channels/stable.json$"), times=2, status=503)),
        proxy.add(Fault("status", op("GET", "", query="list-type"), times=1, status=500, code="InternalError")),
        proxy.add(Fault("truncate", ARCHIVE_GET, times=2, keep=0.4)),
    ]
    status = s.step()
    assert status.state is SyncState.IN_SYNC and status.current == "2" and ts.default == "2", status.message
    assert [f.hits for f in faults] == [2, 1, 2] and len(sleeps) == 5
    placed = tmp_path / "model-store" / "resnet50-v2.mar"
    assert placed.read_bytes() == v2  # what TorchServe registered is the pushed archive, verified
    print(f"FIGURE sync poll with 5 faults: {len(proxy.log)} requests, backoff {sum(sleeps):.2f} s, in sync on v2")


def test_sync_in_a_store_outage_keeps_serving_fails_nothing_and_recovers(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """Every archive GET cut: no half archive is registered, v2 is not marked failed, and the next poll after the
    fault clears switches to it."""
    v2 = push_v1_v2(moto_s3, bucket, tmp_path)
    store, _ = via(proxy, bucket)
    s, ts = syncer(store, tmp_path / "model-store")
    proxy.add(Fault("truncate", ARCHIVE_GET, times=-1, keep=0.5))
    delays = []
    for _ in range(3):
        status = s.step()
        assert status.state is SyncState.STORE_UNAVAILABLE, status.message
        assert status.current == "1" and status.failed == frozenset() and ts.default == "1"
        delays.append(status.next_poll_s)
    assert delays == [1.0, 2.0, 4.0]  # the poll backs off as well
    assert ts.calls == []  # nothing registered
    sync_dir = tmp_path / "model-store" / SYNC_DIR / "resnet50" / "2"
    assert not (tmp_path / "model-store" / "resnet50-v2.mar").exists()
    assert untouched(sync_dir) == []
    proxy.heal()
    status = s.step()
    assert status.state is SyncState.IN_SYNC and status.current == "2"
    assert (tmp_path / "model-store" / "resnet50-v2.mar").read_bytes() == v2


# ---- push: cut at any byte ----------------------------------------------------------------------------------
def cut_points(sizes: list[int], spread: int) -> list[int]:
    """Each request's first, second and last byte, plus ``spread`` points evenly through the whole upload."""
    total, points, offset = sum(sizes), set(), 0
    for size in sizes:
        points.update({offset, offset + 1, offset + size - 1})
        offset += size
    points.update(total * i // spread for i in range(spread))
    return sorted(p for p in points if 0 <= p < total)


def listed(store: Store) -> list[str]:
    """What ``resnet-serving versions`` lists: the inventory's versions."""
    return [row.version for row in store.inventory()]


@pytest.mark.parametrize(
    ("size", "spread"), [(4096, 400 if LONG else 40), (11 * MiB, 40 if LONG else 4)], ids=["single-put", "multipart"]
)
def test_a_push_cut_at_any_byte_leaves_nothing_that_versions_lists(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    size: int, spread: int,
) -> None:  # fmt: skip
    archive, manifest = fake_archive(tmp_path / "src", "1", size)
    store, _ = via(proxy, bucket, prefix="probe")
    store.push(archive, manifest)  # a clean push measures the bytes and the requests a push sends
    sizes = [entry.size for entry in proxy.log]
    total = proxy.bytes_in
    points = cut_points(sizes, spread)
    logging.getLogger("resnet_serving.store").setLevel(logging.ERROR)
    failures: list[str] = []
    interrupted = 0
    for k in points:
        prefix = f"cut-{k}"  # a fresh store per cut point
        proxy.heal()
        proxy.cut_after(k)
        store, _ = via(proxy, bucket, RetryPolicy(attempts=2, base_delay=0.0), prefix=prefix)
        try:
            store.push(archive, manifest)
            done = True  # the cut fell after the manifest's copy was answered: the push completed
        except StoreError:
            done = False
            interrupted += 1
        if listed(direct(moto_s3, bucket, prefix)) != (["1"] if done else []):
            failures.append(f"cut at byte {k} of {total}: push {'completed' if done else 'failed'}, versions disagree")
        if not done:
            with pytest.raises(NotFound):
                direct(moto_s3, bucket, prefix).set_channel("resnet50", "stable", "1")
        proxy.heal()  # the network is back: pushing the same version again completes it
        if not done:
            via(proxy, bucket, prefix=prefix)[0].push(archive, manifest)
        fetched = direct(moto_s3, bucket, prefix).fetch("resnet50", "1", tmp_path / "dest" / str(k))
        if fetched.read_bytes() != archive.read_bytes():
            failures.append(f"cut at byte {k}: the version fetched after it is not the archive pushed")
    capsys.readouterr()
    assert main(["versions", "--json", "--store", f"s3://{bucket}/cut-{points[0]}", "--endpoint-url", moto_s3.url]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)["versions"]] == ["1"]  # the CLI agrees
    assert failures == []
    print(f"FIGURE push {size} B archive: {len(sizes)} requests, {total} bytes sent, cut at {len(points)} bytes "
          f"(each request's first, second and last byte, {spread} spread): {interrupted} interrupted, 0 of them "
          f"listed; {len(points) - interrupted} cut in the final DELETE completed; every re-push whole")  # fmt: skip


# ---- promote: racing writers, a pointer cut at any byte ---------------------------------------------------
def test_racing_promotes_leave_one_of_the_two_values(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    push_v1_v2(moto_s3, bucket, tmp_path)
    s3 = moto_s3.client()
    key = f"{PREFIX}/{channel_key('resnet50', 'stable')}"
    proxy.add(Fault("latency", op("PUT", "channels/"), times=-1, seconds=0.02))  # widen the window
    rounds, outcomes = 300 if LONG else 30, {"1": 0, "2": 0}
    errors: list[BaseException] = []

    def promote(version: str, barrier: threading.Barrier) -> None:
        try:
            store, _ = via(proxy, bucket)
            barrier.wait()
            store.set_channel("resnet50", "stable", version)
        except BaseException as e:
            errors.append(e)

    for _ in range(rounds):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=promote, args=(v, barrier)) for v in ("1", "2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert raw in (b'{"version": "1"}\n', b'{"version": "2"}\n'), raw
        outcomes[direct(moto_s3, bucket).resolve_channel("resnet50", "stable") or ""] += 1
    assert sum(outcomes.values()) == rounds
    print(f"FIGURE {rounds} rounds of two racing promotes: channel ended at v1 {outcomes['1']}, v2 {outcomes['2']}, "
          "0 corrupt")  # fmt: skip


def test_a_promote_cut_at_any_byte_leaves_the_old_pointer_or_the_new(
    moto_s3: MotoS3, proxy: S3FaultProxy, bucket: str, tmp_path: Path
) -> None:
    """A promote is a manifest GET, a PUT to a temp key, a server-side copy and a DELETE. Cut anywhere, the
    pointer is the old one (the promote failed) or the new one (it succeeded), whole."""
    push_v1_v2(moto_s3, bucket, tmp_path)
    s3 = moto_s3.client()
    key = f"{PREFIX}/{channel_key('resnet50', 'stable')}"
    store, _ = via(proxy, bucket, RetryPolicy(attempts=1))
    store.set_channel("resnet50", "stable", "1")  # measure the requests of one promote
    sizes = [e.size for e in proxy.log]
    put_start = sum(sizes[: next(i for i, e in enumerate(proxy.log) if e.method == "PUT")])
    put_size = next(e.size for e in proxy.log if e.method == "PUT")
    if LONG:
        points = list(range(sum(sizes)))
    else:
        points = sorted(set(cut_points(sizes, 30)) | set(range(put_start, put_start + put_size, 9)))
    reset_pointer = direct(moto_s3, bucket)
    logging.getLogger("resnet_serving.store").setLevel(logging.ERROR)
    outcomes = {"old": 0, "new": 0}
    for k in points:
        proxy.heal()
        reset_pointer.set_channel("resnet50", "stable", "1")
        proxy.cut_after(k)
        try:
            store.set_channel("resnet50", "stable", "2")
            expected = "2"
        except StoreError:
            expected = "1"
        raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert raw == f'{{"version": "{expected}"}}\n'.encode(), f"cut at byte {k}: {raw!r}"
        outcomes["new" if expected == "2" else "old"] += 1
    proxy.heal()
    channels = direct(moto_s3, bucket).backend.list_keys("resnet50/channels/")
    assert direct(moto_s3, bucket).channels() == {"stable": expected}  # stray temp keys are never read as channels
    print(f"FIGURE promote ({len(sizes)} requests, {sum(sizes)} bytes) cut at {len(points)} bytes: old pointer "
          f"{outcomes['old']}, new {outcomes['new']}, corrupt 0; {len(channels) - 1} stray temp keys")  # fmt: skip
