"""What ``sagemaker deploy`` asks for, validated before any AWS call; resource names and tags derived from it.

Pure: no AWS calls. Names carry the version and a short digest of the archive (its sha256[:8]) plus a short
hash of the settings, so the same version with the same settings always maps to the same names (idempotent
re-runs) and ``status`` can read the live version off the live endpoint config.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace

from resnet_serving import MODEL_NAME
from resnet_serving.errors import ConfigError, InputError
from resnet_serving.naming import DEPLOY, STACK, guardrail_alarm_names
from resnet_serving.settings import ENV_SAGEMAKER_MODE, Settings, env_name
from resnet_serving.store import parse_store_uri

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
NAME_MAX = 63
NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
INSTANCE_RE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SG_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
# Tag values admit letters, digits, spaces and _ . : / = + - @ only.
TAG_VALUE_RE = re.compile(r"^[\w\s.:/=+\-@]*$")
TAG_VALUE_MAX = 256
SERVERLESS_MEMORY = tuple(range(1024, 6145, 1024))
SERVERLESS_CONCURRENCY = (1, 200)
CONTAINER_TIMEOUT = (60, 3600)
WAIT_INTERVAL = (0, 3600)

# Tags on every resource deploy creates; delete finds its own resources by them.
TAG_MANAGED = "resnet-serving:managed-by"
MANAGED = "resnet-serving"
TAG_ENDPOINT = "resnet-serving:endpoint"
TAG_VERSION = "resnet-serving:version"
TAG_DIGEST = "resnet-serving:digest"
TAG_SHA256 = "resnet-serving:sha256"
TAG_MODEL = "resnet-serving:model"
TAG_STORE = "resnet-serving:store"
TAG_PREVIOUS = "resnet-serving:previous-config"
TAG_LAST_UPDATE = "resnet-serving:last-update"
TAG_SETTINGS = "resnet-serving:setting:"


def alarm_names(endpoint: str) -> tuple[str, ...]:
    """The alarms deploy creates for itself (5xx, p99 latency) when no --alarm is given and the observability
    stack's are missing: names of deploy's own (``resnet_serving.naming``), never the stack's."""
    return guardrail_alarm_names(endpoint, DEPLOY)


def stack_alarm_names(endpoint: str) -> tuple[str, ...]:
    """The observability stack's guardrail alarms (5xx, p99 latency): deploy reads them, never writes them."""
    return guardrail_alarm_names(endpoint, STACK)


def _range(name: str, value: float, lo: float, hi: float | None = None) -> None:
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo:g} and {hi:g}" if hi is not None else f"at least {lo:g}"
        raise InputError(f"{name} must be {bound}, got {value:g}")


@dataclass(frozen=True)
class Traffic:
    """Blue/green traffic shifting: ``canary:10%:600s``, ``linear:20%:300s`` or ``all-at-once``."""

    kind: str  # CANARY | LINEAR | ALL_AT_ONCE
    percent: int = 100
    wait_s: int = 0

    @classmethod
    def parse(cls, text: str) -> Traffic:
        t = text.strip().lower()
        if t in ("all-at-once", "all_at_once"):
            return cls("ALL_AT_ONCE")
        m = re.fullmatch(r"(canary|linear):(\d+)%?:(\d+)s?", t)
        if not m:
            raise InputError(
                f"invalid --traffic {text!r}: use canary:PCT%:SECONDSs (canary:10%:600s), linear:PCT%:SECONDSs "
                f"(linear:20%:300s) or all-at-once"
            )
        kind, percent, wait = m.group(1).upper(), int(m.group(2)), int(m.group(3))
        _range(f"--traffic {kind.lower()} percentage", percent, 1, 99)
        _range("--traffic wait interval (s)", wait, *WAIT_INTERVAL)
        return cls(kind, percent, wait)

    def __str__(self) -> str:
        return "all-at-once" if self.kind == "ALL_AT_ONCE" else f"{self.kind.lower()}:{self.percent}%:{self.wait_s}s"

    def routing(self) -> dict[str, object]:
        """The ``TrafficRoutingConfiguration`` of a ``BlueGreenUpdatePolicy``."""
        if self.kind == "ALL_AT_ONCE":
            return {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        size_key = "CanarySize" if self.kind == "CANARY" else "LinearStepSize"
        return {
            "Type": self.kind,
            size_key: {"Type": "CAPACITY_PERCENT", "Value": self.percent},
            "WaitIntervalInSeconds": self.wait_s,
        }

    def total_wait_s(self) -> int:
        if self.kind == "LINEAR":
            return self.wait_s * -(-100 // self.percent)
        return self.wait_s


@dataclass(frozen=True)
class Autoscaling:
    min: int
    max: int
    target: float  # SageMakerVariantInvocationsPerInstance: invocations per instance per minute
    scale_in_cooldown: int = 300
    scale_out_cooldown: int = 60
    how: str = "--autoscale-target"


@dataclass(frozen=True)
class DeploySpec:
    endpoint: str
    role: str
    image: str
    store: str
    version: str
    model: str = MODEL_NAME
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 2
    serverless_memory_mb: int | None = None
    serverless_max_concurrency: int | None = None
    kms_key: str | None = None
    data_capture: str | None = None
    capture_percent: int = 100
    vpc_subnets: tuple[str, ...] = ()
    vpc_security_groups: tuple[str, ...] = ()
    startup_timeout_s: int | None = None
    download_timeout_s: int | None = None
    autoscaling: Autoscaling | None = None
    traffic: Traffic = field(default_factory=lambda: Traffic("CANARY", 10, 600))
    alarms: tuple[str, ...] = ()
    p99_latency_ms: float = 1000.0
    timeout_s: int = 3600
    #: RESNET_SERVING_* model options for the container (``--env``), e.g. RESNET_SERVING_AMP=bf16; sorted pairs.
    model_env: tuple[tuple[str, str], ...] = ()

    @property
    def serverless(self) -> bool:
        return self.serverless_memory_mb is not None

    def warnings(self) -> list[str]:
        out = []
        if not self.serverless and self.instance_count < 2:
            out.append(
                f"--instance-count {self.instance_count}: SageMaker spreads instances across availability zones "
                "only when there are at least 2; one AZ outage takes this endpoint down"
            )
        if self.vpc_subnets and len(self.vpc_subnets) < 2:
            out.append("one subnet in --vpc-subnets: all instances land in one availability zone")
        return out

    def validate(self) -> DeploySpec:
        """Raise :class:`InputError` naming the first bad setting; return self."""
        if not NAME_RE.match(self.endpoint):
            raise InputError(
                f"invalid --endpoint {self.endpoint!r}: 1-63 letters, digits and '-' (no '-' first or last)"
            )
        if not ROLE_RE.match(self.role):
            raise InputError(f"invalid --role {self.role!r}: expected arn:aws:iam::ACCOUNT:role/NAME")
        if not self.image or any(c.isspace() for c in self.image) or "/" not in self.image:
            raise InputError(
                f"invalid --image {self.image!r}: expected REGISTRY/REPOSITORY:TAG or @sha256:... "
                "(an ECR image SageMaker can pull)"
            )
        if self.serverless:
            mem, conc = self.serverless_memory_mb, self.serverless_max_concurrency
            if mem not in SERVERLESS_MEMORY:
                raise InputError(
                    f"--memory-mb must be one of {', '.join(map(str, SERVERLESS_MEMORY))} (1 GB steps), got {mem}"
                )
            if conc is None:
                raise InputError("--serverless needs --max-concurrency N (1-200)")
            _range("--max-concurrency", conc, *SERVERLESS_CONCURRENCY)
            for flag, given in (
                ("--data-capture", self.data_capture),
                ("--vpc-subnets", self.vpc_subnets),
                ("--vpc-security-groups", self.vpc_security_groups),
                ("--startup-timeout", self.startup_timeout_s),
                ("--download-timeout", self.download_timeout_s),
                ("--autoscale-*", self.autoscaling),
            ):
                if given:
                    raise InputError(f"{flag} does not apply to serverless endpoints (SageMaker does not support it)")
        else:
            if self.serverless_max_concurrency is not None:
                raise InputError("--max-concurrency applies only with --serverless --memory-mb M")
            if not INSTANCE_RE.match(self.instance_type):
                raise InputError(f"invalid --instance-type {self.instance_type!r}: expected ml.FAMILY.SIZE")
            _range("--instance-count", self.instance_count, 1)
        if self.data_capture is not None and not re.fullmatch(
            r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", self.data_capture
        ):
            raise InputError(f"invalid --data-capture {self.data_capture!r}: expected s3://BUCKET[/PREFIX]")
        _range("--capture-percent", self.capture_percent, 0, 100)
        if bool(self.vpc_subnets) != bool(self.vpc_security_groups):
            raise InputError("--vpc-subnets and --vpc-security-groups go together: give both or neither")
        for s in self.vpc_subnets:
            if not SUBNET_RE.match(s):
                raise InputError(f"invalid subnet {s!r} in --vpc-subnets: expected subnet-0123abcd")
        for g in self.vpc_security_groups:
            if not SG_RE.match(g):
                raise InputError(f"invalid security group {g!r} in --vpc-security-groups: expected sg-0123abcd")
        for flag, t in (("--startup-timeout", self.startup_timeout_s), ("--download-timeout", self.download_timeout_s)):
            if t is not None:
                _range(f"{flag} (s)", t, *CONTAINER_TIMEOUT)
        a = self.autoscaling
        if a is not None:
            _range("--autoscale-min", a.min, 1)
            if a.max < a.min:
                raise InputError(f"--autoscale-max ({a.max}) must be at least --autoscale-min ({a.min})")
            if not a.target > 0:
                raise InputError(f"--autoscale-target must be positive, got {a.target:g}")
            _range("--scale-in-cooldown (s)", a.scale_in_cooldown, 0)
            _range("--scale-out-cooldown (s)", a.scale_out_cooldown, 0)
        for name in self.alarms:
            if not re.fullmatch(r"[\w.:/=+\-@]{1,255}", name):
                raise InputError(f"invalid --alarm {name!r}: use letters, digits and _ . : / = + - @")
        _range("--p99-latency-ms", self.p99_latency_ms, 1, 60000)
        _range("--timeout (s)", self.timeout_s, 1)
        if self.timeout_s <= self.traffic.total_wait_s():
            raise InputError(
                f"--timeout {self.timeout_s} is not longer than the traffic shifting it waits for (--traffic "
                f"{self.traffic} takes {self.traffic.total_wait_s()} s): raise --timeout"
            )
        if parse_store_uri(self.store).bucket is None:
            raise InputError(f"--store {self.store!r}: SageMaker reads model data from S3, use s3://BUCKET/PREFIX")
        check_model_env(self.model_env)
        self.settings_tags()  # every setting must fit in a tag, or update_endpoint_version could not rebuild it
        return self

    # ---- names ----------------------------------------------------------------------------------------
    def _settings_hash(self) -> str:
        keep = {
            k: v
            for k, v in asdict(self).items()
            if k
            not in ("endpoint", "store", "version", "autoscaling", "traffic", "alarms", "p99_latency_ms", "timeout_s")
        }
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:6]

    def names(self, sha256: str) -> Names:
        suffix = f"-v{self.version.replace('.', '-')}-{sha256[:8]}-{self._settings_hash()}"
        base = self.endpoint[: NAME_MAX - len(suffix)].rstrip("-")
        name = base + suffix
        return Names(model=name, config=name, digest=sha256[:8])

    # ---- tags -----------------------------------------------------------------------------------------
    def resource_tags(self, sha256: str) -> dict[str, str]:
        return {
            TAG_MANAGED: MANAGED,
            TAG_ENDPOINT: self.endpoint,
            TAG_MODEL: self.model,
            TAG_VERSION: self.version,
            TAG_DIGEST: sha256[:8],
            TAG_SHA256: sha256,
            TAG_STORE: self.store,
        }

    def settings_tags(self) -> dict[str, str]:
        """The endpoint's tags from which :func:`spec_from_tags` rebuilds this spec for another version."""
        a = self.autoscaling
        values: dict[str, str | None] = {
            "role": self.role,
            "image": self.image,
            "instance-type": None if self.serverless else self.instance_type,
            "instance-count": None if self.serverless else str(self.instance_count),
            "serverless": f"{self.serverless_memory_mb}/{self.serverless_max_concurrency}" if self.serverless else None,
            "kms-key": self.kms_key,
            "data-capture": f"{self.capture_percent}@{self.data_capture}" if self.data_capture else None,
            "vpc-subnets": " ".join(self.vpc_subnets) or None,
            "vpc-security-groups": " ".join(self.vpc_security_groups) or None,
            "startup-timeout": str(self.startup_timeout_s) if self.startup_timeout_s else None,
            "download-timeout": str(self.download_timeout_s) if self.download_timeout_s else None,
            "autoscaling": (
                f"{a.min}/{a.max}/{a.target:g}/{a.scale_in_cooldown}/{a.scale_out_cooldown}" if a else None
            ),
            "traffic": str(self.traffic).replace("%", ""),  # "%" is not allowed in tag values
            "alarms": " ".join(self.alarms) or None,
            "p99-latency-ms": f"{self.p99_latency_ms:g}",
            "timeout": str(self.timeout_s),
            "env": " ".join(f"{k}={v}" for k, v in self.model_env) or None,
        }
        tags = {TAG_SETTINGS + k: v for k, v in values.items() if v is not None}
        for key, value in tags.items():
            if len(value) > TAG_VALUE_MAX or not TAG_VALUE_RE.match(value):
                flag = key.removeprefix(TAG_SETTINGS)
                raise InputError(
                    f"--{flag} {value!r} cannot be recorded in an endpoint tag (at most {TAG_VALUE_MAX} letters, "
                    "digits, spaces and _ . : / = + - @)"
                )
        return tags


def parse_model_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``--env KEY=VALUE`` items → sorted (key, value) pairs, each checked by :func:`check_model_env`."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--env {item!r}: expected KEY=VALUE, e.g. {env_name('amp')}=bf16")
        if key in pairs:
            raise InputError(f"--env {key} is given twice")
        pairs[key] = value
    env = tuple(sorted(pairs.items()))
    check_model_env(env)
    return env


def check_model_env(env: tuple[tuple[str, str], ...]) -> None:
    """Only the worker's own RESNET_SERVING_* options, with values the worker accepts: the container would
    otherwise stop at start-up on SageMaker, minutes later, with the error in CloudWatch only."""
    names = {env_name(f.name) for f in fields(Settings)} - {ENV_SAGEMAKER_MODE}
    for key, _ in env:
        if key == ENV_SAGEMAKER_MODE:
            raise InputError(f"--env {key}: deploy sets it from --serverless")
        if key not in names:
            raise InputError(f"--env {key}: not a resnet-serving setting; expected one of {', '.join(sorted(names))}")
    try:
        Settings.from_env(dict(env))
    except ConfigError as e:
        raise InputError(f"--env {e}") from e


@dataclass(frozen=True)
class Names:
    model: str
    config: str
    digest: str


def spec_from_tags(tags: dict[str, str], *, endpoint: str, store: str, version: str) -> DeploySpec:
    """Rebuild the spec that created ``endpoint`` (from its tags), for ``version``: what the operator uses."""
    if tags.get(TAG_MANAGED) != MANAGED:
        raise InputError(
            f"endpoint {endpoint} was not created by `resnet-serving sagemaker deploy` (no {TAG_MANAGED} tag): "
            "deploy it with that command first"
        )
    s = {k.removeprefix(TAG_SETTINGS): v for k, v in tags.items() if k.startswith(TAG_SETTINGS)}
    try:
        spec = DeploySpec(
            endpoint=endpoint,
            role=s["role"],
            image=s["image"],
            store=store,
            version=version,
            model=tags.get(TAG_MODEL, MODEL_NAME),
            timeout_s=int(s.get("timeout", "3600")),
            traffic=Traffic.parse(s.get("traffic", "all-at-once")),
            alarms=tuple(s.get("alarms", "").split()),
            p99_latency_ms=float(s.get("p99-latency-ms", "1000")),
            kms_key=s.get("kms-key"),
            vpc_subnets=tuple(s.get("vpc-subnets", "").split()),
            vpc_security_groups=tuple(s.get("vpc-security-groups", "").split()),
            startup_timeout_s=int(s["startup-timeout"]) if "startup-timeout" in s else None,
            download_timeout_s=int(s["download-timeout"]) if "download-timeout" in s else None,
            model_env=parse_model_env(s.get("env", "").split()),
        )
        if "serverless" in s:
            mem, conc = s["serverless"].split("/")
            spec = replace(spec, serverless_memory_mb=int(mem), serverless_max_concurrency=int(conc))
        else:
            spec = replace(spec, instance_type=s["instance-type"], instance_count=int(s["instance-count"]))
        if "data-capture" in s:
            pct, uri = s["data-capture"].split("@", 1)
            spec = replace(spec, data_capture=uri, capture_percent=int(pct))
        if "autoscaling" in s:
            lo, hi, target, cin, cout = s["autoscaling"].split("/")
            spec = replace(
                spec,
                autoscaling=Autoscaling(
                    int(lo), int(hi), float(target), int(cin), int(cout), how=f"the endpoint's tag (target {target})"
                ),
            )
    except (KeyError, ValueError) as e:
        raise InputError(f"endpoint {endpoint}: its resnet-serving tags are incomplete or malformed ({e})") from e
    return spec.validate()
