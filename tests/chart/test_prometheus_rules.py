"""The chart's PrometheusRule: which alerts each variant renders, their runbooks, and their expressions.

No Prometheus runs here (promtool is not in any registry this project installs from), so each expression is
parsed with Prometheus's own PromQL grammar (@prometheus-io/lezer-promql on node, `make promql`), and every
series and label it names is checked against what the server really exports: the worker's prometheus_client
registry, TorchServe's metrics.yaml, and the kube-state-metrics and operator series named in
tests/helpers/prometheus_rule.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from resnet_serving.inference import metrics as worker_metrics
from tests.helpers.chart import CRD_SCHEMAS, find
from tests.helpers.prometheus_rule import EXTERNAL, OPERATOR, alerts, parse_errors, rule_doc
from tests.helpers.series_check import TARGET_LABELS

RELEASE = "resnet50-serving"
SCHEMA = CRD_SCHEMAS[("monitoring.coreos.com/v1", "PrometheusRule")]

ALWAYS = {
    "ResnetServingLatencyP99OverSLO",
    "ResnetServingHigh5xxRatio",
    "ResnetServingVersionErrorRatioAbovePrevious",
    "ResnetServingWorkerRestarts",
    "ResnetServingContainerRestarts",
    "ResnetServingNoReadyReplicas",
    "ResnetServingMetricsDown",
}


def _ours() -> dict[str, set[str]]:
    """Every resnet_serving_* sample name the worker and serve's exporter write, with its labels."""
    out: dict[str, set[str]] = {"resnet_serving_queued_requests": {"model", "version"}}
    for name in dir(worker_metrics):
        metric = getattr(worker_metrics, name)
        if not hasattr(metric, "_labelnames"):
            continue
        labels = set(metric._labelnames)
        base = metric._name
        kind = metric._type
        if kind == "histogram":
            out[f"{base}_bucket"] = labels | {"le"}
            out[f"{base}_sum"] = out[f"{base}_count"] = labels
        elif kind == "counter":
            out[f"{base}_total"] = labels
        else:
            out[base] = labels
    return out


def _torchserve() -> dict[str, set[str]]:
    """TorchServe 0.12's own series, from the metrics.yaml its front end loads."""
    spec = importlib.util.find_spec("ts")  # located, not imported: importing ts leaves a file open
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    config = yaml.safe_load((package / "configs" / "metrics.yaml").read_text())
    out: dict[str, set[str]] = {}
    for section in ("ts_metrics", "model_metrics"):
        for metrics in (config.get(section) or {}).values():
            for m in metrics or []:
                out[m["name"]] = set(m.get("dimensions") or [])
    return out


KNOWN = {**_ours(), **_torchserve(), **EXTERNAL, **OPERATOR}


def test_off_by_default_and_which_alerts_each_variant_renders(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert find(rendered["default"], "PrometheusRule") == []
    # prod: autoscaling on, operator off; full: both on
    assert set(alerts(rule_doc(rendered, "prod"))) == ALWAYS | {"ResnetServingHPAAtMaximum"}
    assert set(alerts(rule_doc(rendered, "full"))) == ALWAYS | {
        "ResnetServingHPAAtMaximum",
        "ResnetServingOperatorDegradedOrDrifted",
        "ResnetServingOperatorFailed",
    }
    assert rule_doc(rendered, "prod")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_every_alert_has_a_summary_a_runbook_and_a_severity(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, rule in alerts(rule_doc(rendered, "full")).items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook"]
        assert len(runbook) > 150 and ("kubectl" in runbook or "resnet_serving_" in runbook), name


def test_thresholds_come_from_the_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    full = alerts(rule_doc(rendered, "full"))  # tests/chart/values/full.yaml: latencySLOSeconds 0.5
    assert full["ResnetServingLatencyP99OverSLO"]["expr"].endswith("> 0.5")
    prod = alerts(rule_doc(rendered, "prod"))  # the chart's defaults
    assert prod["ResnetServingLatencyP99OverSLO"]["expr"].endswith("> 1")
    assert prod["ResnetServingHigh5xxRatio"]["expr"].endswith("> 0.01")
    assert prod["ResnetServingLatencyP99OverSLO"]["for"] == "5m"


def test_expressions_parse_with_prometheus_grammar(
    rendered: dict[str, list[dict[str, Any]]], promql_parser: str
) -> None:
    rules = alerts(rule_doc(rendered, "full"))
    exprs = [r["expr"] for r in rules.values()]
    assert parse_errors(exprs) == [None] * len(exprs), dict(zip(rules, parse_errors(exprs), strict=True))
    # ...and the checker does fail on a broken expression: one parenthesis dropped from each
    broken = [e.replace(")", "", 1) for e in exprs]
    assert all(err is not None for err in parse_errors(broken))


def test_expressions_name_only_exported_series_and_their_labels(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for name, rule in alerts(rule_doc(rendered, "full")).items():
        expr = rule["expr"]
        selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}", expr)
        used: set[str] = set()
        for metric, body in selectors:
            matchers = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', body))
            metric = metric or matchers.pop("__name__", "")
            names = [n for n in KNOWN if re.fullmatch(metric, n)]
            assert names, f"{name}: {metric} is not a series anything exports"
            for series in names:
                used.add(series)
                assert set(matchers) <= KNOWN[series] | TARGET_LABELS, f"{name}: {series} has no {set(matchers)}"
        labels_of_used = set().union(*(KNOWN[s] | TARGET_LABELS for s in used))
        for clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
            grouped = {x.strip() for x in clause.split(",") if x.strip()}
            assert grouped <= labels_of_used, f"{name}: groups by {grouped - labels_of_used}, which no series has"


def test_our_series_the_rules_use_are_the_ones_the_worker_writes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    exprs = " ".join(r["expr"] for r in alerts(rule_doc(rendered, "full")).values())
    referenced = set(re.findall(r"\b(resnet_serving_(?!operator)[a-z_]+)\{", exprs))
    assert referenced == {
        "resnet_serving_guard_request_seconds_bucket",
        "resnet_serving_request_seconds_count",
        "resnet_serving_worker_starts_total",
    }
    assert referenced <= set(_ours())


def test_schema_rejects_what_the_operator_would(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The PrometheusRule schema the validate test uses is not a rubber stamp."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    good = rule_doc(rendered, "full")
    assert list(validator.iter_errors(good)) == []
    both = copy.deepcopy(good)
    both["spec"]["groups"][0]["rules"][0]["record"] = "x:y"
    bad_for = copy.deepcopy(good)
    bad_for["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    typo = copy.deepcopy(good)
    typo["spec"]["groups"][0]["rules"][0]["anotations"] = {}
    no_expr = copy.deepcopy(good)
    del no_expr["spec"]["groups"][0]["rules"][0]["expr"]
    for broken in (both, bad_for, typo, no_expr):
        assert list(validator.iter_errors(broken)), broken["spec"]["groups"][0]["rules"][0]
