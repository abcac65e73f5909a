"""The CloudWatch agent's Prometheus ConfigMaps in charts/resnet50-serving/examples/cloudwatch/, as the chart tests read
them (tests/chart/test_cloudwatch_example.py, and the series check against a real `serve` in
tests/chart/test_series_exported.py).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.helpers.chart import CHART

EXAMPLE = CHART / "examples" / "cloudwatch"
AGENT = EXAMPLE / "cloudwatch-agent-prometheus.yaml"


def agent_objects() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all(AGENT.read_text()) if d}


def agent_config() -> dict[str, Any]:
    return dict(json.loads(agent_objects()["prometheus-cwagentconfig"]["data"]["cwagentconfig.json"]))


def metric_selectors() -> list[str]:
    emf = agent_config()["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    return sorted({s for d in emf["metric_declaration"] for s in d["metric_selectors"]})
