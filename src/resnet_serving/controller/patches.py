"""Pure builders of the one change the operator makes to a Deployment: the model version of its pod template.

A rollout writes the version into two places of the pod template and nothing else there:

* the annotation ``resnet-serving.io/model-version`` (what ``kubectl rollout history`` tells apart), and
* the ``fetch`` init container's ``RESNET_SERVING_MODEL_VERSION`` (what the new pods download and verify).

It also sets ``kubernetes.io/change-cause`` on the Deployment itself (not the pod template), which the
Deployment controller copies to the new ReplicaSet, so ``kubectl rollout history`` says which model version
each revision is and who asked for it. The Deployment controller then performs an ordinary rolling update;
``kubectl rollout status|history|undo`` work as usual.

The operator sends :func:`json_patch` (RFC 6902): exact paths, guarded by ``test`` operations on the
resourceVersion and on the container and env names it targets, so a Deployment that changed since it was read
is never patched blindly (the API answers 422 and the operator looks again). :func:`strategic_merge_patch` is
the same change as a strategic merge patch, for ``kubectl patch`` by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resnet_serving.controller.observe import find_container
from resnet_serving.controller.spec import DEFAULT_CONTAINER, VERSION_ANNOTATION
from resnet_serving.errors import InvalidTarget
from resnet_serving.settings import ENV_VERSION as VERSION_ENV

CHANGE_CAUSE = "kubernetes.io/change-cause"

JsonPatch = list[dict[str, Any]]


def _pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def change_cause(version: str, source: str) -> str:
    what = f"model v{version}" if version else "the channel-resolving template"
    return f"resnet-serving operator: {what} ({source})"


def strategic_merge_patch(
    version: str, *, container: str = DEFAULT_CONTAINER, cause: str | None = None
) -> dict[str, Any]:
    """The rollout as a strategic merge patch (env merges by name, init containers by name)."""
    patch: dict[str, Any] = {
        "spec": {
            "template": {
                "metadata": {"annotations": {VERSION_ANNOTATION: version}},
                "spec": {"initContainers": [{"name": container, "env": [{"name": VERSION_ENV, "value": version}]}]},
            }
        }
    }
    if cause is not None:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE: cause}}
    return patch


def json_patch(
    deployment: Mapping[str, Any],
    version: str,
    *,
    container: str = DEFAULT_CONTAINER,
    cause: str | None = None,
) -> JsonPatch:
    """The rollout as a JSON patch against ``deployment`` as read from the API.

    Raises :class:`InvalidTarget` when the pod template has no init container named ``container`` or sets
    ``RESNET_SERVING_MODEL_VERSION`` through ``valueFrom``: the operator never invents a container or
    overrides a reference.
    """
    ops: JsonPatch = []
    meta = deployment.get("metadata") or {}
    if meta.get("resourceVersion"):
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]})

    if cause is not None:
        if meta.get("annotations") is None:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {CHANGE_CAUSE: cause}})
        else:
            ops.append({"op": "add", "path": _pointer("metadata", "annotations", CHANGE_CAUSE), "value": cause})

    template = deployment.get("spec", {}).get("template", {})
    annotations = {VERSION_ANNOTATION: version}
    if template.get("metadata") is None:
        ops.append({"op": "add", "path": "/spec/template/metadata", "value": {"annotations": annotations}})
    elif template["metadata"].get("annotations") is None:
        ops.append({"op": "add", "path": "/spec/template/metadata/annotations", "value": annotations})
    else:
        path = _pointer("spec", "template", "metadata", "annotations", VERSION_ANNOTATION)
        ops.append({"op": "add", "path": path, "value": version})

    found = find_container(deployment, container)
    if found is None:
        raise InvalidTarget(f"the pod template has no init container named {container!r}")
    index, init = found
    base = ("spec", "template", "spec", "initContainers", index)
    ops.append({"op": "test", "path": _pointer(*base, "name"), "value": container})
    env = init.get("env")
    if env is None:
        ops.append({"op": "add", "path": _pointer(*base, "env"), "value": [{"name": VERSION_ENV, "value": version}]})
        return ops
    for j, entry in enumerate(env):
        if entry.get("name") == VERSION_ENV:
            if "valueFrom" in entry:
                raise InvalidTarget(f"{VERSION_ENV} of init container {container!r} is set through valueFrom")
            ops.append({"op": "test", "path": _pointer(*base, "env", j, "name"), "value": VERSION_ENV})
            # "add" sets the member whether or not it is there (the API omits an empty value).
            ops.append({"op": "add", "path": _pointer(*base, "env", j, "value"), "value": version})
            return ops
    ops.append({"op": "add", "path": _pointer(*base, "env", "-"), "value": {"name": VERSION_ENV, "value": version}})
    return ops
