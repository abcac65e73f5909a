"""Prometheus metrics and the health endpoints of the operator, on one small HTTP port.

No client library: the few series the operator exports are rendered in the Prometheus text exposition
format (version 0.0.4) by :meth:`Metrics.render`, a pure function of what was recorded.

==========================================================  =========  ======================================
``resnet_serving_operator_model_version_info``              gauge      1 for the version serving (labels:
                                                                       namespace, name, deployment, version)
``resnet_serving_operator_phase``                           gauge      1 for the ModelDeployment's phase
``resnet_serving_operator_sync_errors_total``               counter    failed polls / API calls, by ``source``
``resnet_serving_operator_rollout_duration_seconds``        histogram  rollouts by ``outcome``
``resnet_serving_operator_rollbacks_total``                 counter    automatic rollbacks
``resnet_serving_operator_drift``                           gauge      1 while a manual change is held
==========================================================  =========  ======================================

:func:`serve` answers ``GET /metrics``, ``GET /healthz`` (liveness: the operator's event loop answers) and
``GET /readyz`` (the operator finished starting).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

PREFIX = "resnet_serving_operator"
DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if value != int(value) else str(int(value))


@dataclass
class _Histogram:
    buckets: list[int]
    count: int = 0
    total: float = 0.0


@dataclass
class Metrics:
    """What the operator recorded, per ModelDeployment (``namespace``/``name``)."""

    versions: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    phases: dict[tuple[str, str], str] = field(default_factory=dict)
    drift: dict[tuple[str, str], bool] = field(default_factory=dict)
    errors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    rollbacks: dict[tuple[str, str], int] = field(default_factory=dict)
    durations: dict[tuple[str, str, str], _Histogram] = field(default_factory=dict)

    def observe_state(
        self, namespace: str, name: str, *, deployment: str, version: str | None, phase: str, drifted: bool
    ) -> None:
        key = (namespace, name)
        if version:
            self.versions[key] = (deployment, version)
        else:
            self.versions.pop(key, None)
        self.phases[key] = phase
        self.drift[key] = drifted

    def sync_error(self, namespace: str, name: str, source: str) -> None:
        key = (namespace, name, source)
        self.errors[key] = self.errors.get(key, 0) + 1

    def rollback(self, namespace: str, name: str) -> None:
        self.rollbacks[(namespace, name)] = self.rollbacks.get((namespace, name), 0) + 1

    def rollout_finished(self, namespace: str, name: str, outcome: str, seconds: float) -> None:
        h = self.durations.setdefault((namespace, name, outcome), _Histogram([0] * len(DURATION_BUCKETS)))
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                h.buckets[i] += 1
        h.count += 1
        h.total += seconds

    def forget(self, namespace: str, name: str) -> None:
        """Drop the gauges of a deleted ModelDeployment (counters stay: they only grow)."""
        for table in (self.versions, self.phases, self.drift):
            table.pop((namespace, name), None)

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_: str, samples: Iterable[tuple[str, Labels, float]]) -> None:
            lines.append(f"# HELP {PREFIX}_{name} {help_}")
            lines.append(f"# TYPE {PREFIX}_{name} {kind}")
            for suffix, labels, value in samples:
                lines.append(f"{PREFIX}_{name}{suffix}{_labels(labels)} {_num(value)}")

        def obj(key: tuple[str, str]) -> Labels:
            return (("namespace", key[0]), ("name", key[1]))

        family(
            "model_version_info",
            "gauge",
            "The model version the target Deployment runs (1 per ModelDeployment).",
            (
                ("", (*obj(k), ("deployment", dep), ("version", v)), 1.0)
                for k, (dep, v) in sorted(self.versions.items())
            ),
        )
        family(
            "phase",
            "gauge",
            "The ModelDeployment's phase (1 for the current one).",
            (("", (*obj(k), ("phase", p)), 1.0) for k, p in sorted(self.phases.items())),
        )
        family(
            "drift",
            "gauge",
            "1 while a manual change of the pod template's model version is held.",
            (("", obj(k), 1.0 if d else 0.0) for k, d in sorted(self.drift.items())),
        )
        family(
            "sync_errors_total",
            "counter",
            "Failed model-store polls and Kubernetes API calls.",
            (("", (*obj(k[:2]), ("source", k[2])), float(n)) for k, n in sorted(self.errors.items())),
        )
        family(
            "rollbacks_total",
            "counter",
            "Automatic rollbacks after a failed rollout.",
            (("", obj(k), float(n)) for k, n in sorted(self.rollbacks.items())),
        )

        def histogram() -> Iterable[tuple[str, Labels, float]]:
            for k, h in sorted(self.durations.items()):
                labels = (*obj(k[:2]), ("outcome", k[2]))
                for bound, n in zip(DURATION_BUCKETS, h.buckets, strict=True):
                    yield "_bucket", (*labels, ("le", _num(bound))), float(n)
                yield "_bucket", (*labels, ("le", "+Inf")), float(h.count)
                yield "_sum", labels, h.total
                yield "_count", labels, float(h.count)

        family(
            "rollout_duration_seconds",
            "histogram",
            "Seconds from the pod-template patch to the end of the rollout, by outcome.",
            histogram(),
        )
        return "\n".join(lines) + "\n"


@dataclass
class Health:
    """Set by the operator's startup and cleanup handlers."""

    ready: bool = False


def app(metrics: Metrics, health: Health) -> web.Application:
    async def get_metrics(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if not health.ready:
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ready"})

    application = web.Application()
    application.router.add_get("/metrics", get_metrics)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


async def serve(metrics: Metrics, health: Health, host: str, port: int) -> web.AppRunner:
    """Start the HTTP server on the running event loop; stop it with ``await runner.cleanup()``."""
    runner = web.AppRunner(app(metrics, health), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
