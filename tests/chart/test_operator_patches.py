"""Patch semantics: the operator's patches, built by the pure functions in resnet_serving.controller.patches,
applied with the real `kubectl patch --local` to the Deployment the chart renders (`helm template`).

The expected pod-template change appears (annotation and init-container env), the Deployment's change-cause
is set, and nothing else in the Deployment changes: the rest of the object is compared field by field. The
patched Deployment is still valid for Kubernetes, and the operator reads back the version it wrote.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resnet_serving.controller.observe import view_deployment
from resnet_serving.controller.patches import CHANGE_CAUSE, change_cause, json_patch, strategic_merge_patch
from resnet_serving.controller.spec import VERSION_ANNOTATION
from resnet_serving.settings import ENV_VERSION as VERSION_ENV
from tests.helpers.chart import KUBE_VERSIONS_VALIDATED, deployment, run

Doc = dict[str, Any]


def kubectl_patch(kubectl: str, tmp_path: Path, obj: Doc, patch: Any, kind: str) -> Doc:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(obj))
    proc = run(
        [kubectl, "patch", "--local", "-f", str(manifest), "--type", kind, "-p", json.dumps(patch), "-o", "yaml"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def without_version(d: Doc) -> Doc:
    """The Deployment minus the three values a rollout may change."""
    d = copy.deepcopy(d)
    (d["metadata"].get("annotations") or {}).pop(CHANGE_CAUSE, None)
    if not d["metadata"].get("annotations"):
        d["metadata"].pop("annotations", None)
    d["spec"]["template"]["metadata"]["annotations"].pop(VERSION_ANNOTATION)
    for c in d["spec"]["template"]["spec"]["initContainers"]:
        if c["name"] == "fetch-model":
            c["env"] = [e for e in c["env"] if e["name"] != VERSION_ENV]
    return d


def env_order(d: Doc) -> list[str]:
    fetch = next(c for c in d["spec"]["template"]["spec"]["initContainers"] if c["name"] == "fetch-model")
    return [e["name"] for e in fetch["env"]]


@pytest.fixture(params=["default", "prod", "full"])
def rendered_deployment(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> Doc:
    d = copy.deepcopy(deployment(rendered[request.param]))
    d["metadata"]["resourceVersion"] = "12345"  # as the API returns it: the JSON patch's guard tests it
    return d


@pytest.mark.parametrize("version", ["4", "1.10.2", ""])
def test_json_patch_changes_the_version_and_nothing_else(
    kubectl_bin: str, tmp_path: Path, rendered_deployment: Doc, version: str
) -> None:
    before = rendered_deployment
    cause = change_cause(version, "channel stable")
    after = kubectl_patch(kubectl_bin, tmp_path, before, json_patch(before, version, cause=cause), "json")

    template = after["spec"]["template"]
    assert template["metadata"]["annotations"][VERSION_ANNOTATION] == version
    fetch = next(c for c in template["spec"]["initContainers"] if c["name"] == "fetch-model")
    assert {e["name"]: e.get("value", "") for e in fetch["env"]}[VERSION_ENV] == version
    assert after["metadata"]["annotations"][CHANGE_CAUSE] == cause
    assert without_version(after) == without_version(before), "only the version changed"
    assert env_order(after) == env_order(before), "the env keeps its order (no churn in kubectl diff)"

    view = view_deployment(after, "fetch-model")
    assert view.template_version == version and view.consistent
    for kube_version in KUBE_VERSIONS_VALIDATED:
        kubernetes_validate.validate(after, kube_version, strict=True)


def test_strategic_merge_patch_is_the_same_change(kubectl_bin: str, tmp_path: Path, rendered_deployment: Doc) -> None:
    before = rendered_deployment
    cause = change_cause("4", "channel stable")
    smp = kubectl_patch(kubectl_bin, tmp_path, before, strategic_merge_patch("4", cause=cause), "strategic")
    jp = kubectl_patch(kubectl_bin, tmp_path, before, json_patch(before, "4", cause=cause), "json")
    assert smp == jp


def test_rolling_back_restores_the_exact_template(kubectl_bin: str, tmp_path: Path, rendered_deployment: Doc) -> None:
    """Writing the previous version back gives the previous pod template exactly: the Deployment controller
    then scales the old ReplicaSet up again, as `kubectl rollout undo` does."""
    before = rendered_deployment
    previous = view_deployment(before, "fetch-model").template_version
    assert previous is not None
    rolled = kubectl_patch(kubectl_bin, tmp_path, before, json_patch(before, "9"), "json")
    back = kubectl_patch(kubectl_bin, tmp_path, rolled, json_patch(rolled, previous), "json")
    assert back["spec"]["template"] == before["spec"]["template"]


def test_the_guard_refuses_a_deployment_that_changed_since_it_was_read(
    kubectl_bin: str, tmp_path: Path, rendered_deployment: Doc
) -> None:
    ops = json_patch(rendered_deployment, "4")
    changed = copy.deepcopy(rendered_deployment)
    changed["metadata"]["resourceVersion"] = "12346"
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(yaml.safe_dump(changed))
    proc = run(
        [kubectl_bin, "patch", "--local", "-f", str(manifest), "--type", "json", "-p", json.dumps(ops), "-o", "yaml"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")},
    )
    assert proc.returncode != 0 and "test" in (proc.stderr + proc.stdout).lower()
