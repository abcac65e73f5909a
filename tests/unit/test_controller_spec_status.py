"""The ModelDeployment spec parser, and the status the operator writes and reads back (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from resnet_serving.controller.reconcile import Drift, Memory, Phase, Rollout
from resnet_serving.controller.spec import ModelDeploymentSpec, parse_duration, parse_spec
from resnet_serving.controller.status import conditions, memory_from_status, render
from resnet_serving.errors import InvalidModelDeployment

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
GOOD = {"store": "s3://models/store", "channel": "stable", "deployment": "resnet50-serving"}


# ---- spec -----------------------------------------------------------------------------------------------
def test_defaults() -> None:
    assert parse_spec(GOOD) == ModelDeploymentSpec(
        store="s3://models/store", deployment="resnet50-serving", channel="stable"
    )


def test_every_field() -> None:
    spec = parse_spec(
        {
            "store": "s3://models/store",
            "endpointUrl": "http://minio:9000",
            "model": "resnet50",
            "version": "1.2",
            "deployment": "web",
            "container": "init-model",
            "pollInterval": "1m30s",
            "rolloutTimeout": "1h",
            "sagemakerEndpoint": "resnet50-prod",
            "suspend": True,
        }
    )
    assert (spec.version, spec.channel, spec.poll_interval_s, spec.rollout_timeout_s) == ("1.2", None, 90.0, 3600.0)
    assert (spec.container, spec.endpoint_url, spec.sagemaker_endpoint, spec.suspend) == (
        "init-model", "http://minio:9000", "resnet50-prod", True,
    )  # fmt: skip
    assert spec.source == "pinned version 1.2"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"store": None}, "spec.store is required"),
        ({"store": "my-bucket"}, "spec.store"),
        ({"deployment": "Not_Valid"}, "spec.deployment"),
        ({"version": "3"}, "exactly one of spec.channel"),
        ({"channel": None}, "exactly one of spec.channel"),
        ({"channel": "Stable"}, "spec.channel"),
        ({"channel": None, "version": "latest"}, "spec.version"),
        ({"pollInterval": "5s"}, "between 10s and 24h"),
        ({"pollInterval": "2d"}, "invalid duration"),
        ({"rolloutTimeout": "30s"}, "at least 1m"),
        ({"endpointUrl": "minio:9000"}, "http(s) URL"),
        ({"suspend": "yes"}, "true or false"),
        ({"deployment": 3}, "must be a string"),
    ],
)
def test_bad_specs_are_refused(change: dict[str, Any], words: str) -> None:
    spec = {**GOOD, **change}
    with pytest.raises(InvalidModelDeployment, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_spec({k: v for k, v in spec.items() if v is not None})


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("5m", 300), ("1h30m", 5400), ("2h0m5s", 7205)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1d", "m", "1.5h", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidModelDeployment):
        parse_duration(text)


# ---- status ---------------------------------------------------------------------------------------------
FULL = Memory(
    adopted=True,
    applied="4",
    current="3",
    desired="4",
    target="4",
    failed=frozenset({"10", "2"}),
    rollout=Rollout("4", "", NOW - timedelta(minutes=2), generation=7, rollback_of=None),
    drift=None,
    last_poll=NOW,
    store_errors=0,
    phase=Phase.PROGRESSING,
    reason="Upgrade",
    message="rolling out v4",
)


def test_status_round_trip() -> None:
    status = render(FULL, now=NOW, generation=3)
    assert status["failedVersions"] == ["2", "10"], "numeric order"
    assert status["rollout"] == {
        "version": "4",
        "previousVersion": "",
        "startedAt": "2025-03-01T11:58:00Z",
        "generation": 7,
        "rollbackOf": None,
    }
    assert status["observedGeneration"] == 3
    assert memory_from_status(status) == FULL


def test_status_round_trip_with_drift() -> None:
    m = Memory(adopted=True, applied="4", current="4", drift=Drift("3", "3", "4", "4", NOW), phase=Phase.DRIFTED)
    status = render(m, now=NOW, generation=1)
    assert status["drift"]["expectedVersion"] == "4" and status["rollout"] is None
    assert memory_from_status(status).drift == m.drift


def test_every_field_is_written_so_a_merge_patch_clears_stale_ones() -> None:
    status = render(Memory(), now=NOW, generation=1)
    for key in ("rollout", "drift", "currentVersion", "lastError", "storeError"):
        assert key in status and status[key] is None


def test_unreadable_status_is_an_empty_memory() -> None:
    assert memory_from_status(None) == Memory()
    garbage = {"phase": "Exploded", "failedVersions": ["3", 4, "x"], "rollout": {"version": 4}, "storeErrors": -1}
    m = memory_from_status(garbage)
    assert (m.phase, m.failed, m.rollout, m.store_errors) == (Phase.PENDING, {"3"}, None, 0)


def test_conditions_keep_their_transition_time() -> None:
    first = conditions(FULL, now=NOW, generation=1)
    types = {c["type"]: c for c in first}
    assert set(types) == {"Ready", "Progressing", "Degraded", "Drifted", "StoreReachable"}
    assert types["Progressing"]["status"] == "True" and types["Ready"]["status"] == "False"
    assert types["StoreReachable"]["status"] == "True"
    later = conditions(FULL, now=NOW + timedelta(hours=1), generation=2, previous=first)
    assert {c["type"]: c["lastTransitionTime"] for c in later} == {c["type"]: c["lastTransitionTime"] for c in first}
    ready = Memory(current="4", phase=Phase.READY, reason="UpToDate", message="v4", last_poll=NOW)
    flipped = {c["type"]: c for c in conditions(ready, now=NOW + timedelta(hours=1), generation=2, previous=first)}
    assert flipped["Ready"]["status"] == "True"
    assert flipped["Ready"]["lastTransitionTime"] == "2025-03-01T13:00:00Z"


def test_store_and_drift_conditions() -> None:
    never = {c["type"]: c for c in conditions(Memory(), now=NOW, generation=None)}
    assert never["StoreReachable"]["status"] == "Unknown" and "observedGeneration" not in never["Ready"]
    down = Memory(last_poll=NOW, store_error="unreachable", drift=Drift("3", "3", "4", "4", NOW))
    by_type = {c["type"]: c for c in conditions(down, now=NOW, generation=1)}
    assert by_type["StoreReachable"]["status"] == "False" and by_type["StoreReachable"]["message"] == "unreachable"
    assert by_type["Drifted"]["status"] == "True"
