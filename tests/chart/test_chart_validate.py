"""`helm template` output validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict).

Built-in kinds are validated for Kubernetes 1.30 (the chart's kubeVersion floor) and 1.33 (the eksctl
cluster's version). CRD-defined kinds have no schema in kubernetes-validate and are handled explicitly: each
is validated against a schema of its own in tests/chart/schemas/. A kind that is neither fails the test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.helpers.chart import CRD_SCHEMAS, KUBE_VERSIONS_VALIDATED, VARIANTS, deployment, run


def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = json.loads(CRD_SCHEMAS[(api_version, kind)].read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_kubernetes_validate_ships_the_versions_we_state() -> None:
    available = kubernetes_validate.utils.all_versions()
    for version in KUBE_VERSIONS_VALIDATED:
        assert version in available


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS_VALIDATED)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_match_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], variant: str, kube_version: str
) -> None:
    problems = []
    for doc in rendered[variant]:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            errors = sorted(_crd_validator(*key).iter_errors(doc), key=str)
            problems += [f"{where}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors]
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: {key} is neither a built-in kind nor in CRD_SCHEMAS")
    assert not problems, "\n".join(problems)


def test_crd_kinds_are_rendered_and_validated(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Every schema in CRD_SCHEMAS is exercised by some variant (else it guards nothing)."""
    seen = {(d["apiVersion"], d["kind"]) for docs in rendered.values() for d in docs}
    assert set(CRD_SCHEMAS) <= seen


def test_strict_validation_catches_an_unknown_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """A control: the validator rejects a typo, so the passing tests above mean something."""
    bad = copy.deepcopy(deployment(rendered["default"]))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"periodSeconds": 10}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS_VALIDATED[-1], strict=True)
    wrong_type = copy.deepcopy(deployment(rendered["default"]))
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "ninety"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBE_VERSIONS_VALIDATED[-1], strict=True)


def test_servicemonitor_schema_catches_a_typo(rendered: dict[str, list[dict[str, Any]]]) -> None:
    sm = copy.deepcopy(next(d for d in rendered["prod"] if d["kind"] == "ServiceMonitor"))
    validator = _crd_validator(sm["apiVersion"], sm["kind"])
    assert not list(validator.iter_errors(sm))
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    assert list(validator.iter_errors(sm))


def test_operator_style_patch_keeps_the_pod_template_consistent(
    rendered_raw: dict[str, str], kubectl_bin: str, tmp_path: Path
) -> None:
    """The operator rolls out a version by a strategic-merge patch of the annotation and the init container's
    RESNET_SERVING_MODEL_VERSION. `kubectl patch --local` applies it to the rendered Deployment: the other
    env vars survive (env merges by name) and the result is still a valid Deployment."""
    dep = next(d for d in yaml.safe_load_all(rendered_raw["prod"]) if d and d["kind"] == "Deployment")
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(dep))
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"resnet-serving.io/model-version": "4"}},
                "spec": {
                    "initContainers": [
                        {"name": "fetch-model", "env": [{"name": "RESNET_SERVING_MODEL_VERSION", "value": "4"}]}
                    ]
                },
            }
        }
    }
    proc = run(
        [
            *(kubectl_bin, "patch", "--local", "-f", str(manifest)),
            *("--type", "strategic", "-p", json.dumps(patch), "-o", "json"),
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
    )
    assert proc.returncode == 0, proc.stderr
    patched = json.loads(proc.stdout)
    template = patched["spec"]["template"]
    assert template["metadata"]["annotations"]["resnet-serving.io/model-version"] == "4"
    init = {c["name"]: c for c in template["spec"]["initContainers"]}["fetch-model"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["RESNET_SERVING_MODEL_VERSION"] == "4"
    assert env["RESNET_SERVING_STORE"].startswith("s3://")
    assert env["RESNET_SERVING_MODEL_CHANNEL"] == "stable"
    assert len(template["spec"]["containers"]) == 1
    kubernetes_validate.validate(patched, KUBE_VERSIONS_VALIDATED[-1], strict=True)
