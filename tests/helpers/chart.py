"""Shared helpers for the chart tests (paths, variants, `helm` wrapper, rendered-object lookups, CRD schemas)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

ROOT = REPO
CHART = ROOT / "charts" / "resnet50-serving"
K8S = ROOT / "k8s"
EXAMPLE_VALUES = {p.stem: p for p in sorted((K8S / "values").glob("*.yaml"))}
TEST_VALUES = ROOT / "tests" / "chart" / "values"

# The release and namespace k8s/render.sh uses; the eksctl IRSA role trusts this ServiceAccount.
RELEASE = "resnet50-serving"
NAMESPACE = "resnet-serving"
# The Kubernetes version the manifests are rendered for and validated against (the eksctl cluster's), and
# the oldest one the chart supports (Chart.yaml kubeVersion).
KUBE_VERSION = "1.33.0"
KUBE_VERSIONS_VALIDATED = ("1.30.0", "1.33.0")

# Every variant the tests render: the chart defaults, each example values file, and "full", which turns on
# every optional feature (digest-pinned image, ServiceMonitor, OIDC, custom metric, ...), and "keda", where a
# KEDA ScaledObject replaces the HPA.
VARIANTS: dict[str, list[Path]] = {
    "default": [],
    **{name: [path] for name, path in EXAMPLE_VALUES.items()},
    "full": [EXAMPLE_VALUES["prod"], TEST_VALUES / "full.yaml"],
    "keda": [EXAMPLE_VALUES["prod"], TEST_VALUES / "keda.yaml"],
}

TIMEOUT_S = 180

# Example values for what only the user's account can give, keyed by their requiredValues path: the chart's
# defaults and the overlays leave them empty and list them in requiredValues, and the chart refuses to render
# without them. Obviously examples (AWS's documentation account id, example.com); k8s/render.sh passes the same.
EXAMPLE_ACCOUNT = "123456789012"
ACCOUNT_VALUES: dict[str, str] = {
    "image.repository": f"{EXAMPLE_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/resnet-serving",
    "model.store": f"s3://resnet-serving-models-{EXAMPLE_ACCOUNT}/store",
    "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn": (
        f"arn:aws:iam::{EXAMPLE_ACCOUNT}:role/resnet-serving-model-reader"
    ),
    "ingress.hosts": "{resnet50.example.com}",
    "ingress.https.certificateArn": (
        f"arn:aws:acm:eu-west-1:{EXAMPLE_ACCOUNT}:certificate/00000000-0000-0000-0000-000000000000"
    ),
    "ingress.wafv2AclArn": (
        f"arn:aws:wafv2:eu-west-1:{EXAMPLE_ACCOUNT}:regional/webacl/resnet-serving/00000000-0000-0000-0000-000000000000"
    ),
}

# `--api-versions` for the CRD-defined kinds the chart renders only where the cluster serves them
# (resnet50-serving.crdAPIs). CLUSTER_APIS: a cluster with the monitoring stack, KEDA and the chart's own CRDs;
# FRESH_CLUSTER_APIS: a cluster as the install creates it, with no CRD.
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
MODELDEPLOYMENT_API = "resnet-serving.io/v1alpha1/ModelDeployment"
CLUSTER_APIS = (*MONITORING_APIS, "keda.sh/v1alpha1/ScaledObject", "kopf.dev/v1/KopfPeering", MODELDEPLOYMENT_API)
FRESH_CLUSTER_APIS: tuple[str, ...] = ()
# The custom metrics API the Prometheus adapter registers (an APIService, no CRD): the HPA's Pods metrics render only
# where it is served (resnet50-serving.customMetricsServed).
CUSTOM_METRICS_API = "custom.metrics.k8s.io/v1beta1"
# Every add-on the chart can use (CLUSTER_APIS and the adapter): what the variants above are rendered for.
ADD_ON_APIS = (*CLUSTER_APIS, CUSTOM_METRICS_API)


def required_paths(values: Sequence[Path] = ()) -> list[str]:
    """The requiredValues paths of the chart's defaults merged with `values` (later files add paths)."""
    paths: dict[str, str] = {}
    for f in (CHART / "values.yaml", *values):
        paths.update((yaml.safe_load(Path(f).read_text()) or {}).get("requiredValues") or {})
    return sorted(paths)


def _keys(path: str) -> list[str]:
    """The keys of a requiredValues path (`a.b.c`, `\\.` for a dot inside a key)."""
    return [k.replace("\0", ".") for k in path.replace("\\.", "\0").split(".")]


def _given(values: Sequence[Path], path: str) -> bool:
    """Whether a values file gives the path a non-empty value (the last file that names it wins)."""
    given = False
    for f in values:
        node: Any = yaml.safe_load(Path(f).read_text()) or {}
        for key in _keys(path):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            given = node not in ("", [], {})
    return given


def account_args(values: Sequence[Path] = ()) -> list[str]:
    """`--set` arguments giving ACCOUNT_VALUES for every value the chart requires with these values files and
    they leave empty: the one helper every test that renders the chart (helm template, lint, install) uses."""
    paths = [p for p in required_paths(values) if not _given(values, p)]
    return [a for path in paths for a in ("--set", f"{path}={ACCOUNT_VALUES[path]}")]


def account_overrides(values: Sequence[Path] = ()) -> dict[str, Any]:
    """The values account_args sets, as a nested mapping to merge over the values files."""
    out: dict[str, Any] = {}
    args = account_args(values)
    for path, value in (a.split("=", 1) for a in args[1::2]):
        *parents, leaf = _keys(path)
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value[1:-1].split(",") if value.startswith("{") else value
    return out


SCHEMAS = ROOT / "tests" / "chart" / "schemas"

MODELDEPLOYMENT_CRD = CHART / "crds" / "modeldeployments.resnet-serving.io.yaml"
MODELDEPLOYMENT_SCHEMA = SCHEMAS / "modeldeployment.resnet-serving.io-v1alpha1.json"

# (apiVersion, kind) of CRD-defined kinds the chart renders → their schema. The operator's KopfPeering object
# follows the chart's own crds/kopfpeerings.kopf.dev.yaml; the release's ModelDeployment (operator.modelDeployment)
# follows a schema generated from crds/modeldeployments.resnet-serving.io.yaml (modeldeployment_schema; its CEL
# rules are checked in tests/chart/test_modeldeployment_values.py, the examples in k8s/examples/ in
# tests/unit/test_controller_crd.py). Each kind is validated by tests/chart/test_chart_validate.py.
CRD_SCHEMAS: dict[tuple[str, str], Path] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor.monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule.monitoring.coreos.com-v1.json",
    ("kopf.dev/v1", "KopfPeering"): SCHEMAS / "kopfpeering.kopf.dev-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): SCHEMAS / "scaledobject.keda.sh-v1alpha1.json",
    ("resnet-serving.io/v1alpha1", "ModelDeployment"): MODELDEPLOYMENT_SCHEMA,
}


def _without_cel(schema: Any) -> Any:
    """The schema with its CEL rules left out (JSON Schema has no such keyword; they are evaluated separately)."""
    if isinstance(schema, dict):
        return {k: _without_cel(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
    return schema


def modeldeployment_schema() -> dict[str, Any]:
    """A JSON schema for the ModelDeployment the chart renders, derived from the chart's CRD: its spec schema with
    unknown fields rejected (the API server would drop a misspelt field without a word), metadata as the chart
    writes it, no status. MODELDEPLOYMENT_SCHEMA holds it (write_modeldeployment_schema)."""
    crd = yaml.safe_load(MODELDEPLOYMENT_CRD.read_text())
    (version,) = crd["spec"]["versions"]
    spec = _without_cel(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    spec["additionalProperties"] = False
    api_version = f"{crd['spec']['group']}/{version['name']}"
    kind = crd["spec"]["names"]["kind"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{kind} ({api_version}), as the chart renders it",
        "description": (
            f"Generated from charts/resnet50-serving/crds/{MODELDEPLOYMENT_CRD.name} by "
            "tests/helpers/chart.py (write_modeldeployment_schema): the CRD's spec schema, unknown fields rejected "
            "so a typo in the template fails; no status (the operator writes it). Do not edit."
        ),
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
                    "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                    "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "spec": spec,
        },
    }


def _cel_rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from _cel_rules(sub, (*path, name))


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def crd_admission_errors(schema: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """What the API server would answer to `obj` (an update of `old` when given) under a CRD's openAPIV3Schema:
    schema errors (jsonschema), then the messages of the failing CEL rules (cel-python; transition rules only on
    updates). tests/unit/test_controller_crd.py applies it to the CRD's rules and to the examples in k8s/examples/."""
    import celpy  # imported here: only the CRD checks need these, and every chart test imports this module
    import jsonschema

    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(obj)]
    env = celpy.Environment()
    for path, rule in _cel_rules(schema):
        value = _at(obj, path)
        if value is None:
            continue
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and (old is None or _at(old, path) is None):
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if uses_old:
            activation["oldSelf"] = celpy.json_to_cel(_at(old, path))
        try:
            ok = env.program(env.compile(rule["rule"])).evaluate(activation)
        except celpy.CELEvalError as e:  # e.g. duration("garbage"): the API server rejects it too
            errors.append(f"{rule['message']} ({e})")
            continue
        if not bool(ok):
            errors.append(rule["message"])
    return errors


def write_modeldeployment_schema() -> None:
    """Regenerate MODELDEPLOYMENT_SCHEMA after a change of the CRD:
    .venv/bin/python -c 'from tests.helpers.chart import write_modeldeployment_schema as w; w()'"""
    MODELDEPLOYMENT_SCHEMA.write_text(json.dumps(modeldeployment_schema(), indent=2) + "\n")


def tool(env: str, fallback: str, *, executable: bool = True) -> str:
    path = os.environ.get(env) or str(ROOT / fallback)
    if not (os.path.isfile(path) and (os.access(path, os.X_OK) or not executable)):
        pytest.skip(f"{env} not set and {fallback} missing: run `make tools checkov promql` (or `make test`)")
    return path


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded by TIMEOUT_S), capturing text output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=cwd, check=False)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", RELEASE)


def container(pod_spec: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    matches = [c for c in pod_spec.get(key, []) if c["name"] == name]
    assert len(matches) == 1, f"no single {key[:-1]} named {name}"
    return matches[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every object that runs pods."""
    for d in docs:
        if d["kind"] == "Pod":
            yield f"Pod/{d['metadata']['name']}", d["spec"]
        elif d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


@dataclass
class Helm:
    """`helm template` / `helm lint` against the chart, with this project's release and namespace."""

    binary: str

    def template_cmd(
        self,
        values: list[Path],
        *,
        sets: Sequence[str] = (),
        skip_tests: bool = False,
        api_versions: Sequence[str] = ADD_ON_APIS,
        account: bool = True,
    ) -> list[str]:
        """`helm template` with the values files, then (account) the example account values the chart requires,
        then `sets`; on a cluster that serves `api_versions`."""
        cmd = [self.binary, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        cmd += ["--kube-version", KUBE_VERSION]
        for api in api_versions:
            cmd += ["--api-versions", api]
        for v in values:
            cmd += ["-f", str(v)]
        if account:
            cmd += account_args(values)
        for s in sets:
            cmd += ["--set", s]
        if skip_tests:
            cmd.append("--skip-tests")
        return cmd

    def template_raw(
        self,
        values: list[Path],
        *,
        sets: Sequence[str] = (),
        skip_tests: bool = False,
        api_versions: Sequence[str] = ADD_ON_APIS,
    ) -> str:
        proc = run(self.template_cmd(values, sets=sets, skip_tests=skip_tests, api_versions=api_versions))
        assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
        return proc.stdout

    def template(
        self,
        values: list[Path],
        *,
        sets: Sequence[str] = (),
        skip_tests: bool = False,
        api_versions: Sequence[str] = ADD_ON_APIS,
    ) -> list[dict[str, Any]]:
        raw = self.template_raw(values, sets=sets, skip_tests=skip_tests, api_versions=api_versions)
        return [d for d in yaml.safe_load_all(raw) if d]

    def lint(self, values: list[Path], *, sets: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "lint", "--strict", str(CHART), "--namespace", NAMESPACE]
        for v in values:
            cmd += ["-f", str(v)]
        cmd += account_args(values)
        for s in sets:
            cmd += ["--set", s]
        return run(cmd)
