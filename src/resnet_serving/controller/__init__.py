"""The model-rollout operator (kopf): ModelDeployment custom resources → Deployment rollouts.

The only package that talks to the Kubernetes API (through :mod:`.k8s`). Handlers are thin
(:mod:`.handlers`); every decision is a pure function, unit-tested as tables:

* :mod:`.spec`      the ModelDeployment spec and its validation
* :mod:`.observe`   the target Deployment as facts (pure) and one read of the model store
* :mod:`.reconcile` state → plan: roll out, keep, hold, roll back, hold on drift (reuses ``store.resolve``)
* :mod:`.patches`   the pod-template patch (annotation + init-container env), nothing else
* :mod:`.status`    the custom resource's status and conditions
* :mod:`.metrics`   Prometheus metrics and health endpoints
* :mod:`.config`, :mod:`.run`  ``resnet-serving operator`` (its flags: :mod:`resnet_serving.cli.operator`)

See ``operator/README.md`` for how it behaves on a cluster, drift included.
"""
