"""tests/helpers/promql_eval.py: the PromQL subset the alert tests evaluate, against values worked out by hand from
Prometheus's own algorithms, and a loud refusal of everything outside it."""

from __future__ import annotations

import math

import pytest

from tests.helpers.promql_eval import (
    Evaluator,
    Store,
    Unsupported,
    bucket_quantile,
    duration_s,
    extrapolated_rate,
    labels_of,
    run_alert,
)


def store_of(**series: list[tuple[float, float]]) -> Store:
    store = Store()
    for name, samples in series.items():
        store.add(name, {"job": "x"}, samples)
    return store


def value(store: Store, expr: str, t: float) -> float:
    result = Evaluator(store).instant(expr, t)
    assert isinstance(result, dict) and len(result) == 1, result
    return next(iter(result.values()))


def test_rate_extrapolates_to_the_window_like_prometheus() -> None:
    # samples every 30 s at 2/s: 5 min window (0, 300] holds t=30..300, extrapolated by 30 s at the start
    store = store_of(c_total=[(float(t), 2.0 * t) for t in range(0, 601, 30)])
    assert value(store, "rate(c_total[5m])", 300) == pytest.approx(2.0)
    assert value(store, "increase(c_total[5m])", 300) == pytest.approx(600.0)
    # a counter that starts inside the window is extrapolated back to its zero (t=170), not to the window's start
    late = [(200.0, 10.0), (230.0, 20.0), (260.0, 30.0), (290.0, 40.0)]
    assert extrapolated_rate(late, 0, 300, False) == pytest.approx(30 * (30 + 90 + 10) / 90)


def test_rate_counts_a_counter_reset_as_a_restart_from_zero() -> None:
    store = store_of(c_total=[(0.0, 100.0), (30.0, 110.0), (60.0, 5.0), (90.0, 15.0)])
    # 10 + (5 after the reset from 110) + 10 = 25 over 90 s, extrapolated by 30 s to the 2 min window's start
    assert value(store, "increase(c_total[2m])", 90) == pytest.approx(25 * 120 / 90)
    assert Evaluator(store).instant("rate(c_total[2m])", 0) == {}  # one sample in the window: no rate


def test_offset_and_lookback() -> None:
    store = store_of(g=[(0.0, 1.0), (600.0, 2.0)])
    assert value(store, "g", 299) == 1.0
    assert Evaluator(store).instant("g", 301) == {}  # older than the 5 min lookback: gone
    assert value(store, "g offset 10m", 1200) == 2.0


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(0.1, 10.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * (50 - 10) / 80)
    assert bucket_quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * (99 - 90) / 10)
    assert bucket_quantile(0.99, [(0.1, 0.0), (math.inf, 5.0)]) == 0.1  # in +Inf: the highest finite bound
    assert math.isnan(bucket_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]))
    assert math.isnan(bucket_quantile(0.5, [(0.1, 3.0), (1.0, 5.0)]))  # no +Inf bucket


def test_histogram_quantile_over_recorded_buckets() -> None:
    store = Store()
    store.histogram("h", {"model": "m", "code": "200"}, (0.1, 0.5, 1.0), lambda t: 10, lambda t: 0.3, 0, 900)
    result = Evaluator(store).instant("histogram_quantile(0.99, sum by (model, le) (rate(h_bucket[5m])))", 900)
    assert result == {labels_of({"model": "m"}): pytest.approx(0.1 + 0.4 * 0.99)}


def test_absent_takes_the_selectors_equality_labels() -> None:
    store = store_of(up=[(0.0, 1.0)])
    ev = Evaluator(store)
    assert ev.instant('absent(up{job="x"})', 0) == {}
    assert ev.instant('absent(up{job="y", instance=~"a.*"})', 0) == {labels_of({"job": "y"}): 1.0}
    assert ev.instant('absent(up{job="x"} == 0)', 0) == {(): 1.0}


def test_vector_matching_on_group_left_and_set_operators() -> None:
    store = Store()
    for version, errors in (("1", 1.0), ("2", 5.0)):
        store.add("err", {"model": "m", "version": version}, [(0.0, errors)])
    store.add("limit", {"model": "m", "team": "a"}, [(0.0, 2.0)])
    store.add("new", {"model": "m", "version": "2"}, [(0.0, 1.0)])
    ev = Evaluator(store)
    above = ev.instant("err > on (model) group_left () limit", 0)
    assert above == {labels_of({"__name__": "err", "model": "m", "version": "2"}): 5.0}
    assert ev.instant("err unless on (model, version) new", 0) == {
        labels_of({"__name__": "err", "model": "m", "version": "1"}): 1.0
    }
    assert set(ev.instant("err and on (version) new", 0)) == {
        labels_of({"__name__": "err", "model": "m", "version": "2"})
    }
    assert ev.instant("sum by (model) (err) / on (model) limit", 0) == {labels_of({"model": "m"}): 3.0}
    assert ev.instant("time() - err", 10) == {
        labels_of({"model": "m", "version": "1"}): 9.0,
        labels_of({"model": "m", "version": "2"}): 5.0,
    }
    with pytest.raises(AssertionError, match="many-to-one"):
        ev.instant("err > on (model) limit", 0)


def test_regex_matchers_are_anchored() -> None:
    store = Store()
    for name in ("Requests2XX", "Requests5XX", "XRequests5XX"):
        store.add(name, {}, [(0.0, 1.0)])
    assert len(Evaluator(store).instant('{__name__=~"Requests[25]XX"}', 0)) == 2  # type: ignore[arg-type]
    assert len(Evaluator(store).instant('{__name__!~"Requests.*"}', 0)) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "expr",
    [
        "rate(x[5m:1m])",  # subquery
        "x @ 100",
        "x > bool 1",
        "label_replace(x, 'a', 'b', 'c', 'd')",
        "sum without (a) (x)",
        "x ^ 2",
        "topk(1, x)",
        "x > on (a) group_right () y",
        "rate(x)",
        "x[5m]",
    ],
)
def test_what_it_does_not_implement_is_refused(expr: str) -> None:
    store = store_of(x=[(0.0, 1.0)], y=[(0.0, 1.0)])
    with pytest.raises(Unsupported):
        Evaluator(store).instant(expr, 0)


def test_durations() -> None:
    assert duration_s("5m") == 300 and duration_s("1h30m") == 5400 and duration_s("0s") == 0
    with pytest.raises(Unsupported):
        duration_s("5 minutes")


def test_an_alert_is_pending_for_its_for_duration_then_fires_then_resolves() -> None:
    store = Store()
    store.gauge("g", {"job": "x"}, lambda t: 1.0 if 600 <= t < 1500 else 0.0, 0, 3000)
    timeline = run_alert(store, "g > 0", 300, 0, 3000)
    assert timeline.at(570) == {}
    assert set(timeline.at(600).values()) == {"pending"}
    assert timeline.at(870) != {} and set(timeline.at(870).values()) == {"pending"}
    assert timeline.first_firing() == 900
    assert timeline.firing(1470) == [{"job": "x", "__name__": "g"}]
    assert timeline.resolved_after(900) == 1500
    # a condition shorter than `for:` never fires
    blip = Store()
    blip.gauge("g", {"job": "x"}, lambda t: 1.0 if 600 <= t < 840 else 0.0, 0, 3000)
    assert run_alert(blip, "g > 0", 300, 0, 3000).first_firing() is None
