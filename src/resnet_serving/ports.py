"""The one owner of the TCP ports resnet-serving listens on by default.

``serve``'s flags, :class:`~resnet_serving.torchserve.config.ServeConfig`, ``sync``'s URLs, ``predict`` and
``probe`` and the operator import them. The copies that cannot import them (the chart's templates and values,
``k8s/``, the Makefile's ``make serve`` variables, the serving image's ``EXPOSE`` and its entry point) are held
equal to them by ``tests/unit/test_shared_names.py``.
"""

from __future__ import annotations

#: The inference API (serve's guard, or TorchServe itself with ``--retry-after 0``). SageMaker's contract uses
#: the same port: it sends ``/ping`` and ``/invocations`` to 8080.
INFERENCE_PORT = 8080
#: TorchServe's management API, on loopback only (it can register arbitrary code).
MANAGEMENT_PORT = 8081
#: TorchServe's own Prometheus metrics.
METRICS_PORT = 8082
#: Ours: the ``resnet_serving_*`` series (``serve --model-metrics-port``).
MODEL_METRICS_PORT = 8083
#: TorchServe 0.12 always starts its gRPC servers; serve binds them to loopback on these.
GRPC_INFERENCE_PORT = 7070
GRPC_MANAGEMENT_PORT = 7071
#: The operator's ``/metrics``, ``/healthz`` and ``/readyz`` (a pod of its own, so it may share 8080).
OPERATOR_METRICS_PORT = 8080

LOOPBACK_HOST = "127.0.0.1"


def loopback_url(port: int) -> str:
    """``http://127.0.0.1:PORT``: how a process reaches a server in its own pod or machine."""
    return f"http://{LOOPBACK_HOST}:{port}"
