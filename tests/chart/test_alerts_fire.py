"""Each alert of the chart's PrometheusRule fires on the series of the failure it names, and resolves after it.

promtool is in no registry this project installs from, so the rendered expressions run on the evaluator in
tests/helpers/promql_eval.py (unit-tested in tests/unit/test_promql_eval.py) over synthetic series: counters,
histograms and gauges scraped every 30 s, with the labels the ServiceMonitor's targets and kube-state-metrics
give them. Each scenario starts healthy, breaks at BREAK, recovers at RECOVER, and the alert must be silent before
the break, fire only after its ``for:``, and resolve after the recovery.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_serving.inference.metrics import GUARD_REQUEST_SECONDS, LATENCY_BUCKETS
from tests.helpers.chart import NAMESPACE, RELEASE, VARIANTS, Helm, find
from tests.helpers.prometheus_rule import alerts
from tests.helpers.promql_eval import Evaluator, Store, Timeline, duration_s, run_alert
from tests.helpers.series_check import grafana_to_promql

START, BREAK, RECOVER, END = 0.0, 7200.0, 9000.0, 12600.0
#: The labels the ServiceMonitor's targets give our series and TorchServe's.
TARGET = {"namespace": NAMESPACE, "service": f"{RELEASE}-metrics", "job": f"{RELEASE}-metrics"}
MODEL = {"model": "resnet50"}


def broken(t: float) -> bool:
    return BREAK <= t < RECOVER


def step(healthy: float, failing: float) -> Callable[[float], float]:
    return lambda t: failing if broken(t) else healthy


def render(helm: Helm, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(helm.template_raw(VARIANTS["full"], sets=sets, skip_tests=True)) if d]


def rules_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    (rule,) = find(docs, "PrometheusRule")
    return alerts(rule)


@pytest.fixture(scope="module")
def full(helm: Helm) -> list[dict[str, Any]]:
    """The "full" variant (guard on, autoscaling and the operator on): tests/chart/values/full.yaml."""
    return render(helm)


@pytest.fixture(scope="module")
def rules(full: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return rules_of(full)


def overload() -> Store:
    """Overload: the handler's time stays at 80 ms while requests wait in the guard's admission and TorchServe's
    queue for 3 s between BREAK and RECOVER; fast 400s throughout."""
    store = Store()
    for code, rate in (("200", 20.0), ("400", 1.0)):
        store.histogram(
            "resnet_serving_request_seconds",
            {**TARGET, **MODEL, "version": "7", "code": code},
            LATENCY_BUCKETS,
            lambda t, r=rate: r,
            lambda t: 0.08,
            START,
            END,
        )
        store.histogram(
            GUARD_REQUEST_SECONDS._name,  # the guard's series, as serve's exporter names it
            {**TARGET, **MODEL, "code": code},
            LATENCY_BUCKETS,
            lambda t, r=rate: r,
            step(0.12, 3.0) if code == "200" else (lambda t: 0.01),
            START,
            END,
        )
    return store


def run(rules: dict[str, dict[str, Any]], name: str, store: Store) -> Timeline:
    assert name in rules, f"no alert {name}; the rule has {sorted(rules)}"
    rule = rules[name]
    return run_alert(store, rule["expr"], duration_s(rule.get("for", "0s")), START, END)


def assert_fires_and_resolves(timeline: Timeline, rule: dict[str, Any], *, within_s: float = 900) -> None:
    """Silent while healthy, firing no sooner than ``for:`` after the break, resolved within ``within_s`` of the
    recovery."""
    hold = duration_s(rule.get("for", "0s"))
    fired = timeline.first_firing()
    assert fired is not None, "never fired"
    assert BREAK + hold <= fired < BREAK + hold + 600, fired
    resolved = timeline.resolved_after(fired)
    assert resolved is not None and RECOVER <= resolved <= RECOVER + within_s, resolved


def test_p99_fires_on_the_clients_wait_while_handler_time_stays_flat(rules: dict[str, dict[str, Any]]) -> None:
    """The client's p99 is over the SLO (0.5 s in "full") while the handler's stays under it: the alert fires."""
    store = overload()
    timeline = run(rules, "ResnetServingLatencyP99OverSLO", store)
    assert_fires_and_resolves(timeline, rules["ResnetServingLatencyP99OverSLO"])
    assert timeline.firing(RECOVER - 1) == [{"namespace": NAMESPACE, "model": "resnet50"}]


def test_p99_without_the_guard_reads_handler_time(helm: Helm) -> None:
    """torchserve.retryAfterSeconds 0 runs no guard: the alert falls back to the handler's histogram."""
    rules = rules_of(render(helm, ("torchserve.retryAfterSeconds=0",)))
    assert "resnet_serving_guard_request_seconds" not in rules["ResnetServingLatencyP99OverSLO"]["expr"]
    store = Store()
    store.histogram(
        "resnet_serving_request_seconds",
        {**TARGET, **MODEL, "version": "7", "code": "200"},
        LATENCY_BUCKETS,
        lambda t: 20.0,
        step(0.08, 2.0),
        START,
        END,
    )
    assert_fires_and_resolves(
        run(rules, "ResnetServingLatencyP99OverSLO", store), rules["ResnetServingLatencyP99OverSLO"]
    )


def test_the_dashboards_p99_is_the_clients(full: list[dict[str, Any]]) -> None:
    """The dashboard's latency panel shows the p99 the alert reads: over the SLO in the same overload."""
    (cm,) = [d for d in find(full, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    dashboard = json.loads(next(iter(cm["data"].values())))
    queries = [
        grafana_to_promql(t["expr"])
        for p in dashboard["panels"]
        for t in p["targets"]
        if "histogram_quantile(0.99" in t["expr"]
    ]
    ev = Evaluator(overload())
    during = [ev.instant(q, RECOVER - 1) for q in queries]
    worst = max(v for result in during if isinstance(result, dict) for v in result.values())
    assert worst > 2.0, (queries, during)


@pytest.mark.parametrize("outage", ["zero", "vanished"])
def test_no_ready_replicas_fires_on_zero_and_on_silence(rules: dict[str, dict[str, Any]], outage: str) -> None:
    """A total outage: kube-state-metrics reports 0 available pods, or reports nothing at all (the Deployment
    deleted, kube-state-metrics down); both fire, the 5xx ratio cannot (its series are gone with the pods)."""
    labels = {"namespace": NAMESPACE, "deployment": RELEASE, "job": "kube-state-metrics"}
    store = Store()
    if outage == "zero":
        store.gauge("kube_deployment_status_replicas_available", labels, step(3, 0), START, END)
    else:
        store.gauge("kube_deployment_status_replicas_available", labels, lambda t: 3, START, BREAK)
        store.gauge("kube_deployment_status_replicas_available", labels, lambda t: 3, RECOVER, END)
    # another release's Deployment, down throughout: not this alert's business
    other = {**labels, "deployment": "other"}
    store.gauge("kube_deployment_status_replicas_available", other, lambda t: 0, START, END)
    timeline = run(rules, "ResnetServingNoReadyReplicas", store)
    rule = rules["ResnetServingNoReadyReplicas"]
    # a vanished series is seen as gone once the 5 min lookback passes, so the alert starts up to 5 min later
    assert_fires_and_resolves(timeline, {"for": "5m"} if outage == "zero" else {"for": "10m"}, within_s=120)
    assert rule["labels"]["severity"] == "critical"


def test_metrics_down_fires_when_no_target_is_scraped(rules: dict[str, dict[str, Any]]) -> None:
    store = Store()
    for pod in ("a", "b"):
        target = {**TARGET, "pod": f"{RELEASE}-{pod}", "endpoint": "model-metrics"}
        store.gauge("up", target, lambda t: 1, START, BREAK)
        store.gauge("up", target, lambda t: 1, RECOVER, END)
    timeline = run(rules, "ResnetServingMetricsDown", store)
    assert_fires_and_resolves(timeline, {"for": "10m"}, within_s=120)
    # targets that are there but fail their scrape (up 0) are down too
    failing = Store()
    failing.gauge("up", {**TARGET, "pod": f"{RELEASE}-a"}, step(1, 0), START, END)
    assert_fires_and_resolves(run(rules, "ResnetServingMetricsDown", failing), rules["ResnetServingMetricsDown"])


def test_5xx_ratio(rules: dict[str, dict[str, Any]]) -> None:
    store = Store()
    ts = {**TARGET, "Level": "Host", "Hostname": "pod-a"}
    store.counter("Requests2XX", ts, lambda t: 20.0, START, END)
    store.counter("Requests4XX", ts, lambda t: 1.0, START, END)
    store.counter("Requests5XX", ts, step(0.0, 2.0), START, END)
    assert_fires_and_resolves(run(rules, "ResnetServingHigh5xxRatio", store), rules["ResnetServingHigh5xxRatio"])


def test_a_new_version_failing_more_than_the_previous_one(rules: dict[str, dict[str, Any]]) -> None:
    """Version 7 served with 0.1% errors; version 8 replaces it at BREAK and fails 10%; 8 is rolled back at
    RECOVER."""
    store = Store()

    def version(v: str, serving: Callable[[float], bool], error_share: float) -> None:
        for code, share in (("200", 1 - error_share), ("500", error_share)):
            store.counter(
                "resnet_serving_request_seconds_count",
                {**TARGET, **MODEL, "version": v, "code": code},
                lambda t, s=share: 20.0 * s if serving(t) else 0.0,
                START,
                END,
            )

    version("7", lambda t: not broken(t), 0.001)
    version("8", broken, 0.1)
    rule = rules["ResnetServingVersionErrorRatioAbovePrevious"]
    timeline = run(rules, "ResnetServingVersionErrorRatioAbovePrevious", store)
    # its 30 min rate keeps a rolled-back version's errors in view for up to 30 min
    assert_fires_and_resolves(timeline, rule, within_s=1860)
    assert {f["version"] for f in timeline.firing(RECOVER - 1)} == {"8"}


def test_worker_restarts_in_a_running_pod(rules: dict[str, dict[str, Any]]) -> None:
    store = Store()
    pod = {**TARGET, "pod": f"{RELEASE}-a"}
    store.gauge("kube_pod_start_time", {"namespace": NAMESPACE, "pod": f"{RELEASE}-a"}, lambda t: START, START, END)
    # two workers load at the pod's start, one restarts during the break
    starts = [(float(t), 2.0 if t < BREAK else 3.0) for t in range(int(START), int(END) + 1, 30)]
    store.add("resnet_serving_worker_starts_total", {**pod, **MODEL, "version": "7"}, starts)
    rule = rules["ResnetServingWorkerRestarts"]
    timeline = run(rules, "ResnetServingWorkerRestarts", store)
    fired = timeline.first_firing()
    assert fired is not None and BREAK <= fired <= BREAK + 60
    # one restart is news for the 15 min window, then resolves by itself
    resolved = timeline.resolved_after(fired)
    assert resolved is not None and BREAK + 840 <= resolved <= BREAK + 960, resolved
    assert "for" not in rule


def test_container_restarts(rules: dict[str, dict[str, Any]]) -> None:
    store = Store()
    labels = {"namespace": NAMESPACE, "pod": f"{RELEASE}-a", "container": "torchserve"}
    restarts = [(float(t), 0.0 if t < BREAK else 1.0) for t in range(int(START), int(END) + 1, 30)]
    store.add("kube_pod_container_status_restarts_total", labels, restarts)
    timeline = run(rules, "ResnetServingContainerRestarts", store)
    fired = timeline.first_firing()
    assert fired is not None and BREAK <= fired <= BREAK + 60
    resolved = timeline.resolved_after(fired)
    assert resolved is not None and BREAK + 840 <= resolved <= BREAK + 960, resolved


def test_hpa_at_maximum(rules: dict[str, dict[str, Any]]) -> None:
    store = Store()
    hpa = {"namespace": NAMESPACE, "horizontalpodautoscaler": RELEASE}
    store.gauge("kube_horizontalpodautoscaler_spec_max_replicas", hpa, lambda t: 12, START, END)
    store.gauge("kube_horizontalpodautoscaler_status_current_replicas", hpa, step(4, 12), START, END)
    timeline = run(rules, "ResnetServingHPAAtMaximum", store)
    assert_fires_and_resolves(timeline, rules["ResnetServingHPAAtMaximum"], within_s=120)


@pytest.mark.parametrize(
    ("phase", "alert"),
    [
        ("Degraded", "ResnetServingOperatorDegradedOrDrifted"),
        ("Drifted", "ResnetServingOperatorDegradedOrDrifted"),
        ("Failed", "ResnetServingOperatorFailed"),
    ],
)
def test_operator_phases(rules: dict[str, dict[str, Any]], phase: str, alert: str) -> None:
    """The operator's phase gauge: 1 for the current phase, each phase its own series."""
    store = Store()
    operator = {"namespace": NAMESPACE, "service": f"{RELEASE}-operator-metrics", "exported_namespace": NAMESPACE}
    md = {**operator, "name": "resnet50"}
    store.gauge("resnet_serving_operator_phase", {**md, "phase": "Ready"}, step(1, 0), START, END)
    store.gauge("resnet_serving_operator_phase", {**md, "phase": phase}, step(0, 1), START, END)
    timeline = run(rules, alert, store)
    assert_fires_and_resolves(timeline, rules[alert], within_s=120)
    assert timeline.firing(RECOVER - 1) == [{"exported_namespace": NAMESPACE, "name": "resnet50", "phase": phase}]


def test_every_alert_has_a_scenario_here(rules: dict[str, dict[str, Any]]) -> None:
    """A new alert without a firing test fails here."""
    source = Path(__file__).read_text(encoding="utf-8")
    assert [name for name in rules if f'"{name}"' not in source] == []
