"""Which series a PromQL expression names, and whether a server really exports them.

Expressions are parsed with Prometheus's own grammar (tests/chart/promql_selectors.cjs on node, `make promql`);
each selector's metric name (or its ``__name__`` matcher, a fully anchored regex as in Prometheus) must name a
series in ``known``, and every label it matches on must be one that series carries or one the scrape adds.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.chart import ROOT

SELECTORS = ROOT / "tests" / "chart" / "promql_selectors.cjs"

#: Labels the Prometheus Operator adds to every series scraped through a ServiceMonitor.
TARGET_LABELS = frozenset({"namespace", "service", "pod", "endpoint", "job", "instance", "container"})

#: Grafana's variables, replaced by values PromQL accepts before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "resnet-serving", "$version": ".*"}


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def node_promql(script: Path, exprs: list[str]) -> list[Any]:
    """Run one of the node PromQL scripts on ``exprs`` (a JSON list on stdin): its JSON answer, one per expression."""
    r = subprocess.run(
        ["node", str(script)],
        input=json.dumps(exprs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"NODE_PATH": str(ROOT / ".tools" / "promql" / "node_modules"), "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert r.returncode == 0, r.stderr
    return list(json.loads(r.stdout))


def parse(exprs: list[str]) -> list[dict[str, Any]]:
    """One ``{error, selectors: [{metric, matchers: [[label, op, value]]}]}`` per expression."""
    return node_promql(SELECTORS, exprs)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def scraped(*texts: str) -> dict[str, set[str]]:
    """Sample name → the label names seen on it, from Prometheus text expositions (format 0.0.4).

    Names are kept as exposed, as Prometheus stores them: prometheus_client's parser would add ``_total`` to
    TorchServe's counters (``Requests5XX``), which Prometheus does not.
    """
    out: dict[str, set[str]] = {}
    for text in texts:
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if m is None:
                assert not line.strip() or line.startswith("#"), f"not a sample line: {line!r}"
                continue
            out.setdefault(m.group(1), set()).update(_LABEL.findall(m.group(2) or ""))
    return out


def series_of(selector: dict[str, Any], known: dict[str, set[str]]) -> list[str]:
    """The known series a selector matches by name."""
    if selector["metric"]:
        return [selector["metric"]] if selector["metric"] in known else []
    names = list(known)
    for label, op, value in selector["matchers"]:
        if label != "__name__":
            continue
        test = {
            "=": lambda n, v=value: n == v,
            "!=": lambda n, v=value: n != v,
            "=~": lambda n, v=value: re.fullmatch(v, n) is not None,
            "!~": lambda n, v=value: re.fullmatch(v, n) is None,
        }[op]
        names = [n for n in names if test(n)]
    return names


def problems(exprs: dict[str, str], known: dict[str, set[str]]) -> list[str]:
    """What is wrong with each named expression: a syntax error, a series no one exports, a label it lacks."""
    out = []
    for where, parsed in zip(exprs, parse(list(exprs.values())), strict=True):
        if parsed["error"]:
            out.append(f"{where}: {parsed['error']}")
            continue
        for sel in parsed["selectors"]:
            names = series_of(sel, known)
            if not names:
                out.append(f"{where}: {sel['metric'] or sel['matchers']} names no exported series")
            for name in names:
                labels = {m[0] for m in sel["matchers"]} - {"__name__"}
                missing = labels - known[name] - TARGET_LABELS
                if missing:
                    out.append(f"{where}: {name} has no label {sorted(missing)}")
    return out
