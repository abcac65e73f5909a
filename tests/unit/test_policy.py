"""The one version policy shared by `sync` and the operator: `resolve` as a table, then `decide` and `read_store`."""

from __future__ import annotations

import pytest

from resnet_serving.errors import AccessDenied, InputError, IntegrityError, StoreUnavailable
from resnet_serving.policy import Action, Reason, StoreView, decide, failures_after, read_store, resolve, target_version
from resnet_serving.store.retry import backoff

STORE = ["1", "2", "3", "10"]
A, R = Action, Reason

# id, versions, channel, pinned, current, failed, expected action, expected version, expected reason
TABLE = [
    ("first-start", STORE, "3", None, None, set(), A.RUN, "3", R.INITIAL),
    ("channel-moved-up", STORE, "10", None, "3", set(), A.RUN, "10", R.UPGRADE),
    ("numeric-not-lexical", STORE, "10", None, "2", set(), A.RUN, "10", R.UPGRADE),
    ("rollback-by-promote", STORE, "2", None, "3", set(), A.RUN, "2", R.DOWNGRADE),
    ("up-to-date", STORE, "3", None, "3", set(), A.KEEP, "3", R.UP_TO_DATE),
    ("up-to-date-store-down", None, "3", None, "3", set(), A.KEEP, "3", R.UP_TO_DATE),
    ("no-channel-keeps-current", STORE, None, None, "2", set(), A.HOLD, "2", R.NO_TARGET),
    ("nothing-at-all", STORE, None, None, None, set(), A.HOLD, None, R.NO_TARGET),
    ("empty-strings-are-unset", STORE, "", "", "2", set(), A.HOLD, "2", R.NO_TARGET),
    ("failed-target-held", STORE, "10", None, "3", {"10"}, A.HOLD, "3", R.PREVIOUSLY_FAILED),
    ("other-failure-irrelevant", STORE, "10", None, "3", {"2"}, A.RUN, "10", R.UPGRADE),
    ("failed-on-first-start", STORE, "3", None, None, {"3"}, A.HOLD, None, R.PREVIOUSLY_FAILED),
    ("store-unavailable", None, "10", None, "3", set(), A.HOLD, "3", R.STORE_UNAVAILABLE),
    ("half-uploaded-not-listed", ["1", "2", "3"], "10", None, "3", set(), A.HOLD, "3", R.NOT_IN_STORE),
    ("empty-store", [], "1", None, None, set(), A.HOLD, None, R.NOT_IN_STORE),
    ("pin-beats-channel", STORE, "10", "2", "3", set(), A.RUN, "2", R.DOWNGRADE),
    ("pin-without-channel", STORE, None, "1", None, set(), A.RUN, "1", R.INITIAL),
    ("pin-running", STORE, "10", "3", "3", set(), A.KEEP, "3", R.UP_TO_DATE),
    ("pin-missing-from-store", STORE, "10", "7", "3", set(), A.HOLD, "3", R.NOT_IN_STORE),
    ("pin-failed", STORE, "10", "2", "3", {"2"}, A.HOLD, "3", R.PREVIOUSLY_FAILED),
    ("invalid-channel-value", STORE, "latest", None, "3", set(), A.HOLD, "3", R.INVALID_VERSION),
    ("dotted-versions", ["1.2", "1.10"], "1.10", None, "1.2", set(), A.RUN, "1.10", R.UPGRADE),
]


@pytest.mark.parametrize(
    ("versions", "channel", "pinned", "current", "failed", "action", "version", "reason"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decision_table(versions, channel, pinned, current, failed, action, version, reason):
    decision = resolve(versions=versions, channel_version=channel, pinned=pinned, current=current, failed=failed)
    assert (decision.action, decision.version, decision.reason) == (action, version, reason)
    assert decision.message  # always something a human can read in logs / conditions


def test_hold_message_says_what_keeps_serving():
    decision = resolve(versions=STORE, channel_version="10", current="3", failed={"10"})
    assert "v3 keeps serving" in decision.message
    assert "10" in decision.message


def test_target_reported_even_when_held():
    decision = resolve(versions=None, channel_version="10", current="3")
    assert decision.target == "10"


def test_reasons_are_kubernetes_condition_reasons():
    for reason in Reason:
        assert reason.value[0].isupper() and reason.value.isalnum()


@pytest.mark.parametrize(
    ("failed", "previous", "target", "expected"),
    [
        ({"4"}, "4", "4", {"4"}),  # channel did not move: keep the history, do not retry v4
        ({"4"}, "4", "5", set()),  # channel moved on: forget
        ({"4"}, "4", None, set()),  # channel unset: forget
        ({"4"}, "5", "4", set()),  # moved back to v4: a re-promote is an explicit retry
        (set(), None, "1", set()),
    ],
)
def test_failures_after(failed, previous, target, expected):
    assert failures_after(failed, previous, target) == frozenset(expected)


def test_target_version_prefers_pin():
    assert target_version("3", "2") == "2"
    assert target_version("3", None) == "3"
    assert target_version("", "") is None


# ---- decide: the target, the failure history and resolve, as sync and the operator apply them --------------
UP = StoreView(("1", "2", "3", "10"), "10")
DOWN = StoreView(None, error="s3://models: endpoint unreachable", transient=True)


def test_decide_runs_the_channel_version_and_keeps_failures_while_the_target_stays() -> None:
    d = decide(UP, current="3", previous_target="10", failed={"10"})
    assert (d.action, d.version, d.reason, d.failed) == (A.HOLD, "3", R.PREVIOUSLY_FAILED, frozenset({"10"}))


def test_decide_forgets_failures_when_the_target_moves() -> None:
    d = decide(StoreView(("1", "2", "3"), "2"), current="3", previous_target="10", failed={"10"})
    assert (d.action, d.version, d.target, d.failed) == (A.RUN, "2", "2", frozenset())


def test_decide_judges_by_the_last_target_while_the_store_is_down() -> None:
    held = decide(DOWN, current="3", previous_target="10", failed={"10"})
    assert (held.action, held.version, held.target, held.failed) == (A.HOLD, "3", "10", frozenset({"10"}))
    keep = decide(DOWN, current="3", previous_target="3", failed=set())
    assert (keep.action, keep.reason) == (A.KEEP, R.UP_TO_DATE)
    unknown = decide(DOWN, current="3", previous_target="10", failed=set())
    assert (unknown.action, unknown.reason) == (A.HOLD, R.STORE_UNAVAILABLE)


def test_decide_without_a_channel_ignores_the_last_target_when_the_store_is_down() -> None:
    d = decide(DOWN, current="3", previous_target="3", failed=set(), follows_channel=False)
    assert (d.action, d.reason, d.target) == (A.HOLD, R.NO_TARGET, None)
    pinned = decide(DOWN, current="3", previous_target="3", failed=set(), pinned="3", follows_channel=False)
    assert (pinned.action, pinned.reason) == (A.KEEP, R.UP_TO_DATE)


class _Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def list_versions(self, model: str = "resnet50") -> list[str]:
        if self.error is not None:
            raise self.error
        return ["1", "2"]

    def resolve_channel(self, model: str, channel: str) -> str | None:
        return "2" if channel == "stable" else None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, StoreView(("1", "2"), "2")),
        (StoreUnavailable("endpoint unreachable"), StoreView(None, error="endpoint unreachable", transient=True)),
        (AccessDenied("denied", action="s3:ListBucket", key="s3://b"), StoreView(None, error="denied")),
        (IntegrityError("malformed channel pointer"), StoreView(None, error="malformed channel pointer")),
        (InputError("bad store URI"), StoreView(None, error="bad store URI")),
    ],
    ids=["ok", "transient", "denied", "malformed", "bad-uri"],
)
def test_read_store_reports_instead_of_raising(error: Exception | None, expected: StoreView) -> None:
    assert read_store(_Store(error), "resnet50", "stable") == expected


def test_read_store_without_a_channel_reads_no_pointer() -> None:
    assert read_store(_Store(), "resnet50", None) == StoreView(("1", "2"), None)


def test_one_backoff_curve() -> None:
    assert [backoff(n, base=10.0, cap=60.0) for n in range(5)] == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert backoff(-1, base=1.0, cap=5.0) == 1.0 and backoff(10_000, base=1.0, cap=5.0) == 5.0
