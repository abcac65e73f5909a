"""`resnet-serving plan --emit-values` against the chart: its YAML passes values.schema.json and renders with the
real helm into the HPA, resources and TorchServe flags the plan asked for (checked-in smoke bench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from resnet_serving.cli import main
from tests.helpers.chart import CHART, Helm, container, deployment, one

SMOKE_BENCH = Path(__file__).resolve().parents[1] / "fixtures" / "bench-smoke.json"


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(
            ["plan", "--rps", "200", "--p99-ms", "1000", "--bench", str(SMOKE_BENCH), "--emit-values", "--json",
             str(out)]
        )  # fmt: skip
    assert rc == 0
    return buf.getvalue(), json.loads(out.read_text())


def test_emitted_values_pass_the_chart_schema(emitted: tuple[str, dict[str, Any]]) -> None:
    text, plan = emitted
    values = yaml.safe_load(text)
    assert set(values) == {"autoscaling", "resources", "torchserve"}
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(values)
    assert values == plan["values"]
    eks = plan["rows"][0]
    assert values["autoscaling"]["minReplicas"] == eks["total_units"]


def test_a_value_the_schema_rejects_is_caught(emitted: tuple[str, dict[str, Any]]) -> None:
    """The check above can fail: the same document with a misspelt key does not pass the schema."""
    values = yaml.safe_load(emitted[0])
    values["autoscaling"]["minReplica"] = values["autoscaling"].pop("minReplicas")
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validators.validator_for(schema)(schema).validate(values)


def test_emitted_values_render_with_helm(emitted: tuple[str, dict[str, Any]], helm: Helm, tmp_path: Path) -> None:
    text, _ = emitted
    values = yaml.safe_load(text)
    f = tmp_path / "plan-values.yaml"
    f.write_text(text)
    docs = helm.template([f])
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == values["autoscaling"]["minReplicas"]
    assert hpa["spec"]["maxReplicas"] == values["autoscaling"]["maxReplicas"]
    cpu = next(m for m in hpa["spec"]["metrics"] if m["resource"]["name"] == "cpu")
    assert cpu["resource"]["target"]["averageUtilization"] == values["autoscaling"]["targetCPUUtilizationPercentage"]
    serving = container(deployment(docs)["spec"]["template"]["spec"], "torchserve")
    assert serving["resources"]["limits"]["cpu"] == values["resources"]["limits"]["cpu"]
    assert serving["resources"]["requests"]["memory"] == values["resources"]["requests"]["memory"]
    args = serving.get("args", []) + serving.get("command", [])
    assert args[args.index("--workers") + 1] == str(values["torchserve"]["workers"])
    assert args[args.index("--batch-size") + 1] == str(values["torchserve"]["batchSize"])
