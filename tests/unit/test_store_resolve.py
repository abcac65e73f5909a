"""The version decision shared by `sync` and the operator, as a table: one row per rule and edge."""

from __future__ import annotations

import pytest

from resnet_serving.policy import Action, Reason, failures_after, resolve, target_version

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
