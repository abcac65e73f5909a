"""The operator's settings: flags, else environment (the chart sets it), checked once at start-up.

=====================================  =======================================  =================================
flag                                   environment                              default
=====================================  =======================================  =================================
``--namespace NS`` (repeatable)        ``RESNET_SERVING_OPERATOR_NAMESPACES``   ``POD_NAMESPACE`` (downward API)
                                       (comma-separated)
``--all-namespaces``                   ``RESNET_SERVING_OPERATOR_ALL_NAMESPACES``  off (needs a ClusterRole)
``--peering NAME``                     ``RESNET_SERVING_OPERATOR_PEERING``       none: run standalone
``--priority N``                       ``RESNET_SERVING_OPERATOR_PRIORITY``      random (distinct per replica)
``--metrics-host``/``--metrics-port``  ``RESNET_SERVING_OPERATOR_METRICS_HOST``  ``0.0.0.0`` / ``8080`` (0: off)
                                       / ``..._METRICS_PORT``
(none)                                 ``RESNET_SERVING_OPERATOR_TICK_SECONDS``  ``10``: how often rollouts and
                                                                                drift are checked
=====================================  =======================================  =================================

With a peering name, peering is mandatory: a replica that cannot find its ``KopfPeering`` object stops rather
than running unsupervised next to another replica. kopf pauses every replica of equal priority, so each
replica picks a random priority by default and the highest one works while the others stand by.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from resnet_serving.controller.spec import DNS_LABEL_RE, DNS_SUBDOMAIN_RE
from resnet_serving.errors import ConfigError
from resnet_serving.ports import OPERATOR_METRICS_PORT
from resnet_serving.settings import environment

T = TypeVar("T", int, float)

ENV_NAMESPACES = "RESNET_SERVING_OPERATOR_NAMESPACES"
ENV_ALL_NAMESPACES = "RESNET_SERVING_OPERATOR_ALL_NAMESPACES"
ENV_PEERING = "RESNET_SERVING_OPERATOR_PEERING"
ENV_PRIORITY = "RESNET_SERVING_OPERATOR_PRIORITY"
ENV_METRICS_HOST = "RESNET_SERVING_OPERATOR_METRICS_HOST"
ENV_METRICS_PORT = "RESNET_SERVING_OPERATOR_METRICS_PORT"
ENV_POD_NAMESPACE = "POD_NAMESPACE"
ENV_TICK = "RESNET_SERVING_OPERATOR_TICK_SECONDS"
DEFAULT_METRICS_PORT = OPERATOR_METRICS_PORT
DEFAULT_TICK_S = 10.0


def tick_seconds(environ: Mapping[str, str] | None = None) -> float:
    """How often each ModelDeployment is looked at (rollout progress, drift): ``$RESNET_SERVING_OPERATOR_TICK_SECONDS``,
    1 to 60, default 10. Read once, when the handlers are registered."""
    env = environment() if environ is None else environ
    value = _env_number(env, ENV_TICK, float, lambda: DEFAULT_TICK_S, "a number of seconds")
    if not 1.0 <= value <= 60.0:
        raise ConfigError(f"{ENV_TICK}={env.get(ENV_TICK)!r} must be between 1 and 60 seconds")
    return value


def _random_priority() -> int:
    return random.SystemRandom().randint(1, 2**31 - 1)


def _env_number(env: Mapping[str, str], key: str, cast: Callable[[str], T], default: Callable[[], T], what: str) -> T:
    """``cast(env[key])``, or ``default()`` when unset or empty; a ConfigError naming the variable otherwise."""
    raw = env.get(key)
    if not raw:
        return default()
    try:
        return cast(raw)
    except ValueError as e:
        raise ConfigError(f"{key}={raw!r} is not {what}") from e


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]
    all_namespaces: bool
    peering: str | None
    priority: int
    metrics_host: str
    metrics_port: int
    verbose: bool = False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def load_config(
    *,
    namespaces: list[str] | None = None,
    all_namespaces: bool | None = None,
    peering: str | None = None,
    priority: int | None = None,
    metrics_host: str | None = None,
    metrics_port: int | None = None,
    standalone: bool = False,
    verbose: bool = False,
    environ: Mapping[str, str] | None = None,
) -> OperatorConfig:
    """Flags win over the environment. :class:`ConfigError` names the first bad setting."""
    env = environment() if environ is None else environ
    every = all_namespaces if all_namespaces is not None else _truthy(env.get(ENV_ALL_NAMESPACES))
    names = list(namespaces or [])
    if not names and not every:
        names = [n.strip() for n in (env.get(ENV_NAMESPACES) or "").split(",") if n.strip()]
        if not names and env.get(ENV_POD_NAMESPACE):
            names = [env[ENV_POD_NAMESPACE].strip()]
    if every and names:
        raise ConfigError("give --namespace or --all-namespaces, not both")
    if not every and not names:
        raise ConfigError(
            f"no namespace to watch: pass --namespace NS (or set {ENV_NAMESPACES}, or {ENV_POD_NAMESPACE} "
            f"through the downward API), or --all-namespaces"
        )
    for n in names:
        if not DNS_LABEL_RE.match(n):
            raise ConfigError(f"invalid namespace {n!r}")
    peer = None if standalone else (peering if peering is not None else (env.get(ENV_PEERING) or None))
    if peer is not None and not DNS_SUBDOMAIN_RE.match(peer):
        raise ConfigError(f"invalid peering name {peer!r}")
    if priority is None:
        priority = _env_number(
            env, ENV_PRIORITY, int, lambda: random.SystemRandom().randint(1, 2**31 - 1), "an integer"
        )
    host = metrics_host or env.get(ENV_METRICS_HOST) or "0.0.0.0"
    if metrics_port is None:
        metrics_port = _env_number(env, ENV_METRICS_PORT, int, lambda: DEFAULT_METRICS_PORT, "a port number")
    if not 0 <= metrics_port <= 65535:
        raise ConfigError(f"metrics port {metrics_port} is out of range (0 turns the endpoint off)")
    return OperatorConfig(
        namespaces=tuple(dict.fromkeys(names)),
        all_namespaces=every,
        peering=peer,
        priority=priority,
        metrics_host=host,
        metrics_port=metrics_port,
        verbose=verbose,
    )
