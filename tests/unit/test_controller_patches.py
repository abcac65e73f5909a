"""The pod-template patch builders (pure). tests/chart/test_operator_patches.py applies them with the real
`kubectl patch --local` to the Deployment the chart renders."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from resnet_serving.controller.observe import view_deployment
from resnet_serving.controller.patches import CHANGE_CAUSE, change_cause, json_patch, strategic_merge_patch
from resnet_serving.errors import InvalidTarget


def deployment(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "resourceVersion": "42", "annotations": {"a": "b"}, "generation": 3},
        "spec": {
            "template": {
                "metadata": {"annotations": {"resnet-serving.io/model-version": "3"}},
                "spec": {
                    "initContainers": [
                        {"name": "other", "image": "x"},
                        {
                            "name": "fetch-model",
                            "image": "y",
                            "env": [
                                {"name": "RESNET_SERVING_STORE", "value": "s3://m/s"},
                                {"name": "RESNET_SERVING_MODEL_VERSION", "value": "3"},
                            ],
                        },
                    ],
                    "containers": [{"name": "torchserve", "image": "y"}],
                },
            }
        },
    }
    for path, value in changes.items():
        node = d
        *parents, last = path.split(".")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return d


def test_json_patch_is_guarded_and_touches_three_values() -> None:
    ops = json_patch(deployment(), "4", cause="because")
    assert ops == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/metadata/annotations/kubernetes.io~1change-cause", "value": "because"},
        {"op": "add", "path": "/spec/template/metadata/annotations/resnet-serving.io~1model-version", "value": "4"},
        {"op": "test", "path": "/spec/template/spec/initContainers/1/name", "value": "fetch-model"},
        {
            "op": "test",
            "path": "/spec/template/spec/initContainers/1/env/1/name",
            "value": "RESNET_SERVING_MODEL_VERSION",
        },
        {"op": "add", "path": "/spec/template/spec/initContainers/1/env/1/value", "value": "4"},
    ]


def test_json_patch_creates_missing_maps_and_entries() -> None:
    bare = deployment(**{"metadata.annotations": None, "metadata.resourceVersion": None})
    del bare["spec"]["template"]["metadata"]
    bare["spec"]["template"]["spec"]["initContainers"][1]["env"] = [{"name": "RESNET_SERVING_STORE", "value": "s"}]
    ops = json_patch(bare, "4", cause="c")
    assert {"op": "add", "path": "/metadata/annotations", "value": {CHANGE_CAUSE: "c"}} in ops
    assert {
        "op": "add",
        "path": "/spec/template/metadata",
        "value": {"annotations": {"resnet-serving.io/model-version": "4"}},
    } in ops
    assert ops[-1] == {
        "op": "add",
        "path": "/spec/template/spec/initContainers/1/env/-",
        "value": {"name": "RESNET_SERVING_MODEL_VERSION", "value": "4"},
    }
    assert not any(o["path"] == "/metadata/resourceVersion" for o in ops)
    no_env = deployment()
    del no_env["spec"]["template"]["spec"]["initContainers"][1]["env"]
    no_annotations = deployment()
    no_annotations["spec"]["template"]["metadata"] = {"labels": {"x": "y"}}
    assert json_patch(no_env, "4")[-1] == {
        "op": "add",
        "path": "/spec/template/spec/initContainers/1/env",
        "value": [{"name": "RESNET_SERVING_MODEL_VERSION", "value": "4"}],
    }
    assert {
        "op": "add",
        "path": "/spec/template/metadata/annotations",
        "value": {"resnet-serving.io/model-version": "4"},
    } in json_patch(no_annotations, "4")


def test_json_patch_refuses_what_it_cannot_patch_safely() -> None:
    with pytest.raises(InvalidTarget, match="no init container named 'fetch-model-x'"):
        json_patch(deployment(), "4", container="fetch-model-x")
    ref = deployment()
    ref["spec"]["template"]["spec"]["initContainers"][1]["env"][1] = {
        "name": "RESNET_SERVING_MODEL_VERSION",
        "valueFrom": {"configMapKeyRef": {"name": "m", "key": "v"}},
    }
    with pytest.raises(InvalidTarget, match="valueFrom"):
        json_patch(ref, "4")


def test_json_patch_does_not_modify_its_input() -> None:
    d = deployment()
    before = copy.deepcopy(d)
    json_patch(d, "4", cause="c")
    assert d == before


def test_strategic_merge_patch() -> None:
    assert strategic_merge_patch("4", cause="c") == {
        "metadata": {"annotations": {CHANGE_CAUSE: "c"}},
        "spec": {
            "template": {
                "metadata": {"annotations": {"resnet-serving.io/model-version": "4"}},
                "spec": {
                    "initContainers": [
                        {"name": "fetch-model", "env": [{"name": "RESNET_SERVING_MODEL_VERSION", "value": "4"}]}
                    ]
                },
            }
        },
    }
    assert "metadata" not in strategic_merge_patch("4")


def test_change_cause_names_the_version_and_its_source() -> None:
    assert change_cause("4", "channel stable") == "resnet-serving operator: model v4 (channel stable)"
    assert "channel-resolving" in change_cause("", "rollback")


def test_view_of_a_deployment() -> None:
    d = deployment()
    d["spec"]["replicas"] = 3
    d["status"] = {
        "observedGeneration": 3,
        "replicas": 4,
        "updatedReplicas": 1,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    }
    view = view_deployment(d, "fetch-model")
    assert (view.annotation, view.env_version, view.template_version, view.store) == ("3", "3", "3", "s3://m/s")
    assert (view.generation, view.observed_generation, view.replicas, view.total_replicas) == (3, 3, 3, 4)
    assert view.progress_deadline_exceeded and view.container_found and not view.env_from_ref
    d["spec"]["template"]["spec"]["initContainers"][1]["env"][1] = {"name": "RESNET_SERVING_MODEL_VERSION"}
    empty = view_deployment(d, "fetch-model")
    assert (empty.env_version, empty.template_version, empty.consistent) == ("", None, False)
    missing = view_deployment(d, "nope")
    assert not missing.container_found and missing.env_version is None
