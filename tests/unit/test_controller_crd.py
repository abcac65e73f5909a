"""The ModelDeployment CRD (charts/resnet50-serving/crds/) accepts good custom resources and rejects bad ones.

What the API server does at admission is reproduced here without one: the structural schema with
``jsonschema``, and the CEL rules (``x-kubernetes-validations``) with ``cel-python``, a CEL implementation,
including transition rules against an old object. The example resources in k8s/examples/ must pass; each
bad spec must be rejected, and the operator's own parser (``parse_spec``) must agree with the CRD. Every field
the operator writes into ``.status`` must be in the schema (the API server would silently prune it otherwise).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_serving.controller import spec as spec_mod
from resnet_serving.controller.reconcile import Drift, Memory, Phase, Rollout
from resnet_serving.controller.spec import parse_spec
from resnet_serving.controller.status import render
from resnet_serving.errors import InvalidModelDeployment
from tests.helpers import REPO
from tests.helpers.chart import crd_admission_errors as admission_errors

ROOT = REPO
CRD_FILE = ROOT / "charts" / "resnet50-serving" / "crds" / "modeldeployments.resnet-serving.io.yaml"
PEERING_CRD_FILE = ROOT / "charts" / "resnet50-serving" / "crds" / "kopfpeerings.kopf.dev.yaml"
EXAMPLES = sorted((ROOT / "k8s" / "examples").glob("*.yaml"))
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_FILE.read_text())


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def good() -> dict[str, Any]:
    return {
        "apiVersion": "resnet-serving.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "resnet50-serving", "namespace": "resnet-serving"},
        "spec": {"store": "s3://models/store", "channel": "stable", "deployment": "resnet50-serving"},
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_admitted_and_parsed(schema: dict[str, Any], path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert (obj["apiVersion"], obj["kind"]) == ("resnet-serving.io/v1alpha1", "ModelDeployment")
    assert admission_errors(schema, obj) == []
    parse_spec(obj["spec"])


def test_there_are_channel_and_pinned_examples() -> None:
    specs = [yaml.safe_load(p.read_text())["spec"] for p in EXAMPLES]
    assert any("channel" in s for s in specs) and any("version" in s for s in specs)


BAD = [
    ("channel-and-version", {"version": "3"}, "exactly one of spec.channel"),
    ("neither", {"channel": None}, "exactly one of spec.channel"),
    ("no-store", {"store": None}, "'store' is a required property"),
    ("no-deployment", {"deployment": None}, "'deployment' is a required property"),
    ("bucket-only", {"store": "models"}, "does not match"),
    ("http-store", {"store": "https://models.s3.amazonaws.com/x"}, "does not match"),
    ("uppercase-channel", {"channel": "Stable"}, "does not match"),
    ("word-version", {"channel": None, "version": "latest"}, "does not match"),
    ("numeric-version", {"channel": None, "version": 3}, "is not of type 'string'"),
    ("bad-deployment-name", {"deployment": "Resnet_50"}, "does not match"),
    ("poll-too-fast", {"pollInterval": "5s"}, "pollInterval must be between 10s and 24h"),
    ("poll-too-slow", {"pollInterval": "25h"}, "pollInterval must be between 10s and 24h"),
    ("poll-in-days", {"pollInterval": "1d"}, "does not match"),
    ("timeout-too-short", {"rolloutTimeout": "30s"}, "rolloutTimeout must be at least 1m"),
    ("endpoint-not-url", {"endpointUrl": "minio:9000"}, "does not match"),
    ("suspend-string", {"suspend": "yes"}, "is not of type 'boolean'"),
    ("sagemaker-name", {"sagemakerEndpoint": "-bad"}, "does not match"),
]


@pytest.mark.parametrize(("case", "change", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_specs_are_rejected_at_admission_and_by_the_operator(
    schema: dict[str, Any], case: str, change: dict[str, Any], words: str
) -> None:
    obj = good()
    obj["spec"].update(change)
    obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
    errors = admission_errors(schema, obj)
    assert any(words in e for e in errors), errors
    with pytest.raises(InvalidModelDeployment):
        parse_spec(obj["spec"])


def test_the_target_deployment_is_immutable(schema: dict[str, Any]) -> None:
    old = good()
    new = copy.deepcopy(old)
    new["spec"]["deployment"] = "another"
    assert "spec.deployment is immutable" in " ".join(admission_errors(schema, new, old))
    moved = copy.deepcopy(old)
    moved["spec"]["channel"] = "canary"
    assert admission_errors(schema, moved, old) == []


def test_defaults_match_the_operator(schema: dict[str, Any]) -> None:
    props = schema["properties"]["spec"]["properties"]
    assert props["pollInterval"]["default"] == spec_mod.DEFAULT_POLL_INTERVAL
    assert props["rolloutTimeout"]["default"] == spec_mod.DEFAULT_ROLLOUT_TIMEOUT
    assert props["container"]["default"] == spec_mod.DEFAULT_CONTAINER
    assert props["model"]["default"] == "resnet50"
    assert props["version"]["pattern"] == spec_mod.VERSION_RE.pattern
    assert props["channel"]["pattern"] == spec_mod.CHANNEL_RE.pattern
    assert props["store"]["pattern"] == spec_mod.STORE_RE.pattern


def test_names_printer_columns_and_status_subresource(crd: dict[str, Any], schema: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{spec_mod.PLURAL}.{spec_mod.GROUP}"
    assert (crd["spec"]["group"], crd["spec"]["scope"]) == (spec_mod.GROUP, "Namespaced")
    assert crd["spec"]["names"]["kind"] == spec_mod.KIND
    (version,) = crd["spec"]["versions"]
    assert version["name"] == spec_mod.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Deployment", "Channel", "Pinned", "Current", "Desired", "Phase", "Age"} <= set(columns)
    for c in columns.values():
        if c["jsonPath"].startswith((".spec.", ".status.")):
            parts = tuple(c["jsonPath"].lstrip(".").split("."))
            node = schema
            for p in parts:
                node = node["properties"][p]
    assert schema["properties"]["status"]["properties"]["phase"]["enum"] == [p.value for p in Phase]


def _unknown_keys(value: Any, schema: dict[str, Any], path: str = "status") -> list[str]:
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            return []
        out = [f"{path}.{k}" for k in value if k not in props]
        return out + [e for k, v in value.items() if k in props for e in _unknown_keys(v, props[k], f"{path}.{k}")]
    if isinstance(value, list) and "items" in schema:
        return [e for v in value for e in _unknown_keys(v, schema["items"], f"{path}[]")]
    return []


MEMORIES = [
    Memory(),
    Memory(adopted=True, applied="4", current="3", desired="4", target="4", failed=frozenset({"2"}),
           rollout=Rollout("4", "", NOW - timedelta(minutes=1), generation=3), last_poll=NOW,
           phase=Phase.PROGRESSING, reason="Upgrade", message="rolling out"),
    Memory(adopted=True, applied="4", current="4", drift=Drift("3", None, "4", "4", NOW), phase=Phase.DRIFTED,
           reason="ManualChange", message="held", store_errors=2, store_error="down", last_error="down"),
    Memory(adopted=True, applied="3", current="3", rollout=Rollout("3", "3", NOW, 5, rollback_of="4"),
           phase=Phase.ROLLING_BACK, reason="RollingBack", message="rolling back"),
]  # fmt: skip


@pytest.mark.parametrize("memory", MEMORIES)
def test_the_status_the_operator_writes_fits_the_schema(schema: dict[str, Any], memory: Memory) -> None:
    status = render(memory, now=NOW, generation=2)
    written = {k: v for k, v in status.items() if v is not None}  # a merge patch's nulls delete fields
    for key in ("rollout", "drift"):
        if isinstance(written.get(key), dict):
            written[key] = {k: v for k, v in written[key].items() if v is not None}
    obj = {**good(), "status": written}
    assert admission_errors(schema, obj) == []
    assert _unknown_keys(written, schema["properties"]["status"]) == []


def test_kopf_peering_crd_is_kopfs() -> None:
    peering = yaml.safe_load(PEERING_CRD_FILE.read_text())
    assert peering["metadata"]["name"] == "kopfpeerings.kopf.dev"
    assert (peering["spec"]["group"], peering["spec"]["scope"], peering["spec"]["names"]["kind"]) == (
        "kopf.dev", "Namespaced", "KopfPeering",
    )  # fmt: skip
    (version,) = peering["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True, "kopf writes its peers into .status"
