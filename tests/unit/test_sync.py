"""The sync loop's state machine, with fakes for the store and TorchServe.

Fakes, not the real parts, because these cases need failures on demand that a real TorchServe or S3 cannot be
made to produce reliably: a registration that leaves a half-registered version behind, a version that answers
as another version, a queue that drains over several polls, a clock that jumps past a deadline, an endpoint
that fails exactly once. ``tests/integration/test_sync.py`` runs the same code against a real TorchServe and
a real S3 protocol endpoint (moto server).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from resnet_serving.artifact.layout import ARCHIVE_NAME
from resnet_serving.errors import AccessDenied, IntegrityError, ManagementError, NotFound, StoreUnavailable
from resnet_serving.sync.loop import SYNC_DIR, Syncer, SyncState
from resnet_serving.torchserve.management import VersionSettings
from tests.helpers.sync import SETTINGS, FakeClock, FakeTorchServe

MODEL = "resnet50"


class FakeStore:
    """Versions whose archive is the text ``version:<V>`` (``broken`` ones do not load); channels; outages."""

    uri = "s3://fake/models"

    def __init__(self, versions: dict[str, str], channel: str | None = None) -> None:
        self.versions = dict(versions)  # version -> "good" | "tampered" | "broken" | "mislabelled:<V>"
        self.channel = channel
        self.down: Exception | None = None
        self.fetch_down: Exception | None = None
        self.fetches: list[str] = []

    def resolve_channel(self, model: str, channel: str) -> str | None:
        if self.down:
            raise self.down
        return self.channel

    def list_versions(self, model: str = MODEL) -> list[str]:
        if self.down:
            raise self.down
        return sorted(self.versions, key=lambda v: tuple(int(p) for p in v.split(".")))

    def fetch(self, model: str, version: str, dest_dir: str | Path) -> Path:
        self.fetches.append(version)
        if self.fetch_down:
            raise self.fetch_down
        kind = self.versions[version]
        if kind == "tampered":
            raise IntegrityError(f"{self.uri}/{model}/{version}/model.mar has sha256 0000… but its manifest says …")
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        inside = kind.split(":", 1)[1] if kind.startswith("mislabelled:") else version
        (dest / ARCHIVE_NAME).write_text("broken" if kind == "broken" else f"version:{inside}")
        return dest / ARCHIVE_NAME


def make(tmp_path: Path, store: FakeStore, ts: FakeTorchServe, **kw) -> Syncer:
    kw.setdefault("interval", 1.0)
    kw.setdefault("max_backoff", 8.0)
    return Syncer(
        store,
        ts,
        channel="stable",
        model_store=ts.model_store,
        inference_url="http://127.0.0.1:8080",
        prober=ts.probe,
        clock=FakeClock(),
        **kw,
    )


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    d = tmp_path / "model-store"
    d.mkdir()
    (d / "resnet50.mar").write_text("version:1")  # serve's own archive: sync never deletes it
    return d


def test_in_sync_does_nothing(tmp_path, model_store):
    store, ts = FakeStore({"1": "good"}, channel="1"), FakeTorchServe(model_store)
    status = make(tmp_path, store, ts).step()
    assert status.state is SyncState.IN_SYNC and status.current == "1" and status.in_sync
    assert ts.calls == [] and store.fetches == []
    assert status.next_poll_s == 1.0


def test_upgrade_registers_answers_sets_default_then_drains_and_unregisters(tmp_path, model_store):
    store, ts = FakeStore({"1": "good", "2": "good"}, channel="2"), FakeTorchServe(model_store)
    ts.pending["1"] = [3, 1, 0]  # three queued requests drain over three polls
    syncer = make(tmp_path, store, ts)
    status = syncer.step()

    assert status.state is SyncState.IN_SYNC and status.current == "2" and ts.default == "2"
    assert ts.calls == [
        ("register", "resnet50-v2.mar"),
        ("probe", "2"),
        ("set_default", "2"),
        ("pending", "1"),
        ("pending", "1"),
        ("pending", "1"),
        ("probe", "1"),  # the FIFO barrier: answered after everything queued before the switch
        ("unregister", "1"),
    ]
    assert ts.registered == {"2": SETTINGS}  # the new version runs with the old one's workers and batching
    assert status.switches == 1 and status.attempts == 1
    timing = status.last_switch
    assert timing is not None and timing.from_version == "1" and timing.to_version == "2"
    assert status.last_switch_s == timing.switch_s > 0 and timing.total_s >= timing.switch_s + timing.drain_s - 1e-9
    assert (model_store / "resnet50-v2.mar").read_text() == "version:2"
    assert (model_store / "resnet50.mar").exists()  # not ours to delete

    store.channel = "1"  # a rollback is a switch like any other
    status = syncer.step()
    assert status.current == "1" and status.reason == "UpToDate" and "Downgrade from v2 to v1" in status.message
    assert not (model_store / "resnet50-v2.mar").exists()
    assert not (model_store / SYNC_DIR / MODEL / "2").exists()


def test_several_workers_get_one_drain_probe_each(tmp_path, model_store):
    store, ts = FakeStore({"1": "good", "2": "good"}, channel="2"), FakeTorchServe(model_store)
    two = VersionSettings(workers=2, batch_size=4, max_batch_delay_ms=7, response_timeout_s=30)
    ts.registered["1"] = two
    status = make(tmp_path, store, ts).step()
    assert status.current == "2" and ts.registered == {"2": two}
    drain = ts.calls[ts.calls.index(("set_default", "2")) + 1 :]
    assert drain == [("pending", "1"), ("probe", "1"), ("probe", "1"), ("unregister", "1")]


def test_old_version_that_cannot_be_removed_is_retried_as_a_stray(tmp_path, model_store):
    store, ts = FakeStore({"1": "good", "2": "good"}, channel="2"), FakeTorchServe(model_store)
    real = ts.unregister
    failures = iter([ManagementError("DELETE /models/resnet50/1 → HTTP 500: busy", status=500)])

    def flaky(model: str, version: str, *, timeout: float = 0) -> None:
        exc = next(failures, None)
        if exc:
            raise exc
        real(model, version, timeout=timeout)

    ts.unregister = flaky  # type: ignore[method-assign]
    syncer = make(tmp_path, store, ts)
    status = syncer.step()
    assert status.state is SyncState.IN_SYNC and status.current == "2" and ts.default == "2"
    assert "removing v1 failed" in (status.last_error or "") and status.next_poll_s == 1.0
    status = syncer.step()
    assert set(ts.registered) == {"2"} and status.last_error is None


def test_a_500_from_unregister_that_removed_the_version_anyway_is_not_an_error(tmp_path, model_store, caplog):
    """TorchServe 0.12 can answer 500 to an unregister that races its workers and still remove the version."""
    store, ts = FakeStore({"1": "good", "2": "good"}, channel="2"), FakeTorchServe(model_store)
    real = ts.unregister

    def racy(model: str, version: str, *, timeout: float = 0) -> None:
        real(model, version, timeout=timeout)
        raise ManagementError(
            f"DELETE /models/resnet50/{version} → HTTP 500: ConcurrentModificationException", status=500
        )

    ts.unregister = racy  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="resnet_serving.sync.loop"):
        status = make(tmp_path, store, ts).step()
    assert status.state is SyncState.IN_SYNC and status.current == "2" and status.last_error is None
    assert set(ts.registered) == {"2"} and not (model_store / "resnet50-v1.mar").exists()
    assert any("TorchServe removed it anyway" in r.getMessage() for r in caplog.records)


def test_tampered_version_is_failed_and_not_fetched_again_until_the_channel_moves(tmp_path, model_store):
    store = FakeStore({"3": "good", "4": "tampered", "5": "good"}, channel="4")
    ts = FakeTorchServe(model_store, serving="3")
    syncer = make(tmp_path, store, ts)

    status = syncer.step()
    assert status.state is SyncState.HOLDING and status.current == "3" and status.failed == {"4"}
    assert "sha256" in (status.last_error or "") and "v3 keeps serving" in status.message
    assert ts.calls == [] and ts.default == "3"
    for _ in range(3):
        status = syncer.step()
        assert status.state is SyncState.HOLDING and status.reason == "PreviouslyFailed"
    assert store.fetches == ["4"] and status.attempts == 1 and status.polls == 4

    store.channel = "5"
    status = syncer.step()
    assert status.current == "5" and status.failed == frozenset() and ts.default == "5"


def test_a_failed_version_is_retried_once_the_channel_moved_away_and_back(tmp_path, model_store):
    store = FakeStore({"3": "good", "4": "tampered"}, channel="4")
    ts = FakeTorchServe(model_store, serving="3")
    syncer = make(tmp_path, store, ts)
    syncer.step()
    store.channel = "3"
    assert syncer.step().failed == frozenset()
    store.channel = "4"
    syncer.step()
    assert store.fetches == ["4", "4"]


@pytest.mark.parametrize("half_registered", [False, True])
def test_a_version_that_does_not_load_is_failed_and_cleaned_up(tmp_path, model_store, half_registered):
    store = FakeStore({"5": "good", "6": "broken"}, channel="6")
    ts = FakeTorchServe(model_store, serving="5")
    ts.leave_half_registered = half_registered
    status = make(tmp_path, store, ts).step()

    assert status.state is SyncState.HOLDING and status.failed == {"6"} and status.current == "5"
    assert "could not load v6" in (status.last_error or "")
    assert ts.default == "5" and set(ts.registered) == {"5"}
    assert (("unregister", "6") in ts.calls) is half_registered
    assert not (model_store / "resnet50-v6.mar").exists() and not (model_store / SYNC_DIR / MODEL / "6").exists()


def test_a_version_that_answers_as_another_version_is_failed(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "good"}, channel="2")
    ts = FakeTorchServe(model_store)
    ts.answer_as["2"] = "1"
    status = make(tmp_path, store, ts, ready_timeout=3).step()
    assert status.failed == {"2"} and ts.default == "1" and set(ts.registered) == {"1"}
    assert "answered as version 1, not 2" in (status.last_error or "")


def test_a_version_whose_workers_never_get_ready_is_failed_after_the_deadline(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "good"}, channel="2")
    ts = FakeTorchServe(model_store)
    ts.ready = False
    status = make(tmp_path, store, ts, ready_timeout=3).step()
    assert status.failed == {"2"} and "did not answer within 3s: 0 of 1 workers READY" in (status.last_error or "")
    assert set(ts.registered) == {"1"} and ts.default == "1"


def test_an_archive_that_registers_as_another_version_is_failed_and_removed(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "mislabelled:9"}, channel="2")
    ts = FakeTorchServe(model_store)
    status = make(tmp_path, store, ts).step()
    assert status.failed == {"2"} and "registered as v9, not v2" in (status.last_error or "")
    assert set(ts.registered) == {"1"} and ("unregister", "9") in ts.calls


def test_store_outage_keeps_serving_and_backs_off_then_recovers(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "good"}, channel="1")
    ts = FakeTorchServe(model_store)
    syncer = make(tmp_path, store, ts)
    assert syncer.step().in_sync

    store.down = StoreUnavailable("s3://fake: endpoint unreachable, gave up after 3 attempts")
    delays = []
    for _ in range(5):
        status = syncer.step()
        assert status.state is SyncState.STORE_UNAVAILABLE and status.current == "1" and status.target == "1"
        delays.append(status.next_poll_s)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped at max_backoff
    assert status.consecutive_errors == 5 and "v1 keeps serving" in status.message
    assert ts.calls == []

    store.down = None
    store.channel = "2"
    status = syncer.step()
    assert status.current == "2" and status.consecutive_errors == 0 and status.next_poll_s == 1.0


def test_store_outage_during_fetch_is_not_a_failed_version(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "good"}, channel="2")
    ts = FakeTorchServe(model_store)
    syncer = make(tmp_path, store, ts)
    store.fetch_down = StoreUnavailable("s3://fake: endpoint unreachable")
    status = syncer.step()
    assert status.state is SyncState.STORE_UNAVAILABLE and status.failed == frozenset() and status.current == "1"
    store.fetch_down = None
    assert syncer.step().current == "2"
    assert store.fetches == ["2", "2"]


def test_permanent_store_errors_are_errors_not_failed_versions(tmp_path, model_store):
    store = FakeStore({"1": "good"}, channel="1")
    ts = FakeTorchServe(model_store)
    syncer = make(tmp_path, store, ts)
    store.down = AccessDenied("access denied: s3:ListBucket on s3://fake", action="s3:ListBucket", key="s3://fake")
    status = syncer.step()
    assert status.state is SyncState.ERROR and status.current == "1" and "s3:ListBucket" in (status.last_error or "")
    store.down = NotFound("gone")
    assert syncer.step().next_poll_s == 2.0


def test_torchserve_unreachable_is_an_error_with_backoff(tmp_path, model_store):
    store = FakeStore({"1": "good", "2": "good"}, channel="2")
    ts = FakeTorchServe(model_store)
    ts.unreachable = True
    syncer = make(tmp_path, store, ts)
    assert [syncer.step().next_poll_s for _ in range(3)] == [1.0, 2.0, 4.0]
    assert syncer.status.state is SyncState.ERROR and store.fetches == []
    ts.unreachable = False
    assert syncer.step().current == "2"


def test_strays_are_unregistered(tmp_path, model_store):
    """A crash mid-switch left v7 registered but not the default: sync owns the model and removes it."""
    store = FakeStore({"1": "good"}, channel="1")
    ts = FakeTorchServe(model_store)
    ts.registered["7"] = SETTINGS
    (model_store / "resnet50-v7.mar").write_text("version:7")
    assert make(tmp_path, store, ts).step().in_sync
    assert set(ts.registered) == {"1"} and not (model_store / "resnet50-v7.mar").exists()


def test_first_version_when_nothing_is_registered(tmp_path, model_store):
    store = FakeStore({"1": "good"}, channel="1")
    ts = FakeTorchServe(model_store, serving=None)
    status = make(tmp_path, store, ts, defaults=SETTINGS).step()
    assert status.current == "1" and status.reason == "UpToDate" and "Initial" in status.message
    assert ("unregister", "1") not in ts.calls and ts.registered == {"1": SETTINGS}


def test_channel_not_set_holds(tmp_path, model_store):
    status = make(tmp_path, FakeStore({"1": "good"}), FakeTorchServe(model_store)).step()
    assert status.state is SyncState.HOLDING and status.reason == "NoTarget" and status.current == "1"


def test_one_log_line_per_transition(tmp_path, model_store, caplog):
    store = FakeStore({"1": "good", "2": "good"}, channel="1")
    syncer = make(tmp_path, store, FakeTorchServe(model_store))
    with caplog.at_level(logging.INFO, logger="resnet_serving.sync.loop"):
        for _ in range(3):
            syncer.step()
        store.channel = "2"
        for _ in range(3):
            syncer.step()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("in-sync: serving v1, stable → v1")
    assert lines[1].startswith("switching: serving v1, stable → v2; Upgrade: v1 → v2")
    assert lines[2].startswith("in-sync: serving v2, stable → v2; Upgrade from v1 to v2 in ")


def test_run_survives_unexpected_errors_and_stops_on_the_event(tmp_path, model_store, caplog):
    store = FakeStore({"1": "good", "2": "good"}, channel="2")
    ts = FakeTorchServe(model_store)
    syncer = make(tmp_path, store, ts, interval=0.01, max_backoff=0.02)
    boom = iter([RuntimeError("bug"), None])
    real = store.resolve_channel

    def flaky(model: str, channel: str) -> str | None:
        exc = next(boom, None)
        if exc:
            raise exc
        return real(model, channel)

    store.resolve_channel = flaky  # type: ignore[method-assign]
    stop = threading.Event()
    syncer.subscribe(lambda s: s.in_sync and s.current == "2" and stop.set())
    thread = threading.Thread(target=syncer.run, args=(stop,))
    with caplog.at_level(logging.INFO, logger="resnet_serving.sync.loop"):
        thread.start()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert syncer.status.current == "2"
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)


def test_cli_requires_a_model_store_directory(tmp_path, capsys):
    from resnet_serving.cli import main

    with pytest.raises(SystemExit) as info:
        main(["sync", "--store", "file:///nowhere"])
    assert info.value.code == 2 and "--model-store" in capsys.readouterr().err
    # a bad flag is the caller's mistake: exit 2, as for every command
    assert main(["sync", "--store", "file:///nowhere", "--model-store", str(tmp_path / "missing"), "--once"]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["sync", "--store", "file:///x", "--model-store", str(tmp_path), "--interval", "0"]) == 2
    assert "--interval 0.0 must be > 0" in capsys.readouterr().err
