"""The infra configuration (infra/config.json): typed, validated before any construct is built.

Every bad value raises ConfigError naming the parameter by its path in the file (`api.stage`), so a
typo fails `make infra` in a second with a sentence, not a CloudFormation rollback half an hour later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_serving.errors import InputError
from resnet_serving.plan import limits as capacity

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config.json"

# The values CloudWatch Logs accepts for a log group's RetentionInDays.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
ROLE_KINDS = ("serving", "operator", "publisher", "sagemaker", "deployer")
# ecr_repositories, in this order: the images docker/build.sh builds, each pushed to its own repository.
IMAGE_KINDS = ("serving", "operator")
# ${AWS::AccountId}-style placeholders CloudFormation substitutes; everything else must be a literal name.
PSEUDO = re.compile(r"\$\{AWS::(AccountId|Region|Partition)\}")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+=,.@-]{0,63}$")
ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Who may assume the deployer role: an account (its root: any principal of it whose own policy allows
# sts:AssumeRole), a role or a user. No wildcards: a trust policy with one would admit anyone it matches.
TRUSTED_PRINCIPAL = re.compile(
    r"^arn:(aws[a-z-]*|\$\{AWS::Partition\}):iam::(\d{12}|\$\{AWS::AccountId\}):"
    r"(root|role/[\w+=,.@/-]{1,512}|user/[\w+=,.@/-]{1,512})$"
)


class ConfigError(ValueError):
    """A value in the infra configuration that cannot be deployed; the message names the parameter."""


@dataclass(frozen=True)
class Replication:
    destination_bucket_arn: str
    destination_kms_key_arn: str
    role_name: str


@dataclass(frozen=True)
class StoreConfig:
    bucket_name: str  # may hold ${AWS::AccountId} / ${AWS::Region}: rendered with Fn::Sub
    prefix: str
    noncurrent_to_intelligent_tiering_days: int
    noncurrent_expiration_days: int
    abort_incomplete_multipart_days: int
    access_log_expiration_days: int
    replication: Replication | None


@dataclass(frozen=True)
class EksConfig:
    namespace: str
    serving_service_account: str
    operator_service_account: str
    # Opt-in: the operator's IRSA role may also move spec.sagemakerEndpoint to each new version.
    operator_sagemaker_sync: bool = False


@dataclass(frozen=True)
class EksIntegration:
    """The optional private route from API Gateway to the EKS path's internal load balancer."""

    load_balancer_arn: str
    host: str  # the ingress's host name: API Gateway sends it as Host (and as the TLS server name)
    protocol: str  # http or https, the ALB listener the route reaches
    subnet_ids: tuple[str, ...]  # VPC link V2 (an ALB target) only
    security_group_ids: tuple[str, ...]  # VPC link V2 only

    @property
    def vpc_link_v2(self) -> bool:
        """True for an ALB (VPC link V2, no NLB); False for an NLB in front of the ALB (VPC link V1)."""
        return ":loadbalancer/app/" in self.load_balancer_arn


@dataclass(frozen=True)
class ApiConfig:
    name: str
    stage: str
    model: str
    throttle_rate: float
    throttle_burst: int
    waf_rate_limit_per_5min: int
    oauth_scope: str
    eks_integration: EksIntegration | None = None


@dataclass(frozen=True)
class SageMakerConfig:
    endpoint_name: str
    variant_name: str
    max_instances: int
    # May assume the deployer role (`resnet-serving sagemaker deploy|status|rollback|delete`); may hold
    # ${AWS::AccountId} / ${AWS::Partition}: rendered with Fn::Sub.
    deployer_principals: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlarmConfig:
    p99_latency_ms: float
    error_5xx_percent: float
    throttled_requests_per_minute: float
    evaluation_periods: int


@dataclass(frozen=True)
class BudgetConfig:
    monthly_usd: float
    alert_percent: float


@dataclass(frozen=True)
class InfraConfig:
    project: str
    store: StoreConfig
    roles: dict[str, str]
    eks: EksConfig
    ecr_repositories: tuple[str, ...]
    api: ApiConfig
    sagemaker: SageMakerConfig
    alarms: AlarmConfig
    log_retention_days: int
    budget: BudgetConfig

    @property
    def repositories(self) -> dict[str, str]:
        """Image kind (``serving``, ``operator``) -> its ECR repository name, from ``ecr_repositories``."""
        return dict(zip(IMAGE_KINDS, self.ecr_repositories, strict=True))

    @property
    def serving_repository(self) -> str:
        return self.repositories["serving"]


class _Reader:
    """Reads one JSON object, remembering the path for error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'the config'} must be a JSON object, got {type(data).__name__}")
        self.data, self.path = data, path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise ConfigError(f"{self._name(key)} is missing")
        return self.data[key]

    def section(self, key: str) -> _Reader:
        return _Reader(self.raw(key), self._name(key))

    def string(self, key: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self._name(key)} must be a non-empty string, got {value!r}")
        if pattern and not pattern.match(value):
            raise ConfigError(f"{self._name(key)} is not a valid {what or 'name'}: {value!r}")
        return value

    def number(self, key: str, *, integer: bool = False, minimum: float | None = None) -> float:
        value = self.raw(key)
        kind = "a positive whole number" if integer else "a positive number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise ConfigError(f"{self._name(key)} must be {kind}, got {value!r}")
        if value <= 0:
            raise ConfigError(f"{self._name(key)} must be {kind}, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self._name(key)} must be at least {minimum:g}, got {value!r}")
        return value

    def integer(self, key: str, *, minimum: float | None = None) -> int:
        return int(self.number(key, integer=True, minimum=minimum))

    def unknown(self, known: set[str]) -> None:
        extra = sorted(set(self.data) - known)
        if extra:
            raise ConfigError(f"{self.path or 'the config'}: unknown parameter(s) {', '.join(extra)}")


def _bucket_name(r: _Reader) -> str:
    name = r.string("bucket_name")
    rendered = PSEUDO.sub("123456789012", name)  # the longest pseudo value (an account id) for the length check
    if "${" in rendered or not BUCKET_NAME.match(rendered) or ".." in rendered:
        raise ConfigError(
            f"{r._name('bucket_name')} is not a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens; "
            f"only ${{AWS::AccountId}}, ${{AWS::Region}}, ${{AWS::Partition}} are substituted): {name!r}"
        )
    return name


def _replication(r: _Reader) -> Replication | None:
    if r.data.get("replication") is None:
        return None
    rep = r.section("replication")
    rep.unknown({"destination_bucket_arn", "destination_kms_key_arn", "role_name"})
    bucket = rep.string("destination_bucket_arn", re.compile(r"^arn:aws[a-z-]*:s3:::[a-z0-9.-]{3,63}$"), "bucket ARN")
    key = rep.string("destination_kms_key_arn", re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/.+$"), "key ARN")
    return Replication(bucket, key, rep.string("role_name", NAME, "IAM role name"))


LOAD_BALANCER_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/(app|net)/[A-Za-z0-9-]{1,32}/[0-9a-f]{1,32}$"
)
HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")


def _ids(r: _Reader, key: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    value = r.data.get(key) or []
    if not isinstance(value, list):
        raise ConfigError(f"{r._name(key)} must be a list of {what}s, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not pattern.match(item):
            raise ConfigError(f"{r._name(key)}[{i}] is not a valid {what}: {item!r}")
    return tuple(value)


def _eks_integration(a: _Reader) -> EksIntegration | None:
    if a.data.get("eks_integration") is None:
        return None
    e = a.section("eks_integration")
    e.unknown(
        {"enabled", "load_balancer_arn", "host", "protocol", "vpc_link_subnet_ids", "vpc_link_security_group_ids"}
    )
    enabled = e.raw("enabled")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{e._name('enabled')} must be true or false, got {enabled!r}")
    if not enabled:
        return None
    if e.data.get("load_balancer_arn") is None:
        raise ConfigError(
            f"{e._name('load_balancer_arn')} is missing: with {e._name('enabled')} on, name the EKS path's internal "
            "ALB (or the NLB in front of it)"
        )
    arn = e.string("load_balancer_arn", LOAD_BALANCER_ARN, "ALB or NLB ARN (arn:...:loadbalancer/app|net/<name>/<id>)")
    protocol = e.string("protocol", re.compile(r"^https?$"), "protocol (http or https)")
    integration = EksIntegration(
        load_balancer_arn=arn,
        host=e.string("host", HOST, "host name (the ingress's host, lowercase)"),
        protocol=protocol,
        subnet_ids=_ids(e, "vpc_link_subnet_ids", SUBNET_ID, "subnet id"),
        security_group_ids=_ids(e, "vpc_link_security_group_ids", SECURITY_GROUP_ID, "security group id"),
    )
    if integration.vpc_link_v2 and not (integration.subnet_ids and integration.security_group_ids):
        raise ConfigError(
            f"{e._name('vpc_link_subnet_ids')} and {e._name('vpc_link_security_group_ids')} must each list at least "
            "one id: a VPC link V2 to an ALB places its network interfaces in those subnets, with those groups"
        )
    if not integration.vpc_link_v2 and (integration.subnet_ids or integration.security_group_ids):
        raise ConfigError(
            f"{e._name('vpc_link_subnet_ids')} and {e._name('vpc_link_security_group_ids')} must be empty for an NLB: "
            "a VPC link V1 reaches the NLB itself and takes no subnets or security groups"
        )
    return integration


#: WAF's rate rule counts over this window, in seconds.
WAF_WINDOW_S = capacity.WAF_WINDOW_S
#: `plan --emit-capacity` sizes the WAF to block an API key only past this many times the throttle: API Gateway
#: throttles a key at its plan, and the WAF stops what would still flood the stage.
WAF_PLAN_FACTOR = capacity.WAF_FACTOR


#: Keys that moved to the capacity file, and where they are now: one input decides every limit.
MOVED = {
    "api.throttle_rate": "front_door.throttle_rate",
    "api.throttle_burst": "front_door.throttle_burst",
    "api.waf_rate_limit_per_5min": "front_door.waf_rate_limit_per_5min",
    "sagemaker.max_instances": "sagemaker.max_instances",
    "budget.monthly_usd": "budget.monthly_usd",
}


def _moved(r: _Reader) -> None:
    for key in r.data:
        if r._name(key) in MOVED:
            raise ConfigError(
                f"{r._name(key)} comes from the capacity file's {MOVED[r._name(key)]} (capacity_file): set it there"
            )


def _capacity(top: _Reader, base: Path) -> capacity.Limits:
    """The capacity file ``capacity_file`` names (relative to the config's directory): the one input for the
    throttle, burst, WAF rate, SageMaker maximum and the budget's amount."""
    path = base / top.string("capacity_file")
    try:
        limits = capacity.load(path)
    except InputError as exc:
        raise ConfigError(f"capacity_file: {exc.message}") from None
    waf = limits.front_door.waf_rate_limit_per_5min
    if not 10 <= waf <= 2_000_000_000:  # WAF's own bounds for a rate-based rule
        raise ConfigError(
            f"capacity_file: {path}: front_door.waf_rate_limit_per_5min ({waf}) must be between 10 and 2000000000"
        )
    return limits


def _flag(r: _Reader, key: str) -> bool:
    """An optional true/false switch, off when absent."""
    value = r.data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{r._name(key)} must be true or false, got {value!r}")
    return value


def _principals(r: _Reader, key: str) -> tuple[str, ...]:
    value = r.raw(key)
    if not isinstance(value, list) or not value:
        raise ConfigError(
            f"{r._name(key)} must list at least one IAM principal ARN (an account's root, a role or a user), "
            f"got {value!r}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str) or not TRUSTED_PRINCIPAL.match(item):
            raise ConfigError(
                f"{r._name(key)}[{i}] is not an IAM principal ARN (arn:aws:iam::ACCOUNT:root, :role/NAME or "
                f":user/NAME; ${{AWS::Partition}} and ${{AWS::AccountId}} are substituted; no wildcards): {item!r}"
            )
    if len(set(value)) != len(value):
        raise ConfigError(f"{r._name(key)} names a principal twice: {value!r}")
    return tuple(value)


def parse(data: Any, base: Path = DEFAULT_CONFIG.parent) -> InfraConfig:
    """Validate a decoded config.json (``base``: its directory, where ``capacity_file`` is relative to); raises
    ConfigError naming the first bad parameter."""
    top = _Reader(data, "")
    top.unknown(
        {"project", "store", "roles", "eks", "ecr_repositories", "api", "sagemaker", "alarms", "log_retention_days",
         "budget", "capacity_file"}
    )  # fmt: skip
    limits = _capacity(top, base)

    s = top.section("store")
    s.unknown(
        {"bucket_name", "prefix", "noncurrent_to_intelligent_tiering_days", "noncurrent_expiration_days",
         "abort_incomplete_multipart_days", "access_log_expiration_days", "replication"}
    )  # fmt: skip
    prefix = s.string(
        "prefix", re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"), "key prefix (no leading/trailing /)"
    )
    tiering = s.integer("noncurrent_to_intelligent_tiering_days")
    expire = s.integer("noncurrent_expiration_days")
    if expire <= tiering:
        raise ConfigError(
            f"store.noncurrent_expiration_days ({expire}) must be later than "
            f"store.noncurrent_to_intelligent_tiering_days ({tiering})"
        )
    store = StoreConfig(
        bucket_name=_bucket_name(s),
        prefix=prefix,
        noncurrent_to_intelligent_tiering_days=tiering,
        noncurrent_expiration_days=expire,
        abort_incomplete_multipart_days=s.integer("abort_incomplete_multipart_days"),
        access_log_expiration_days=s.integer("access_log_expiration_days"),
        replication=_replication(s),
    )

    roles_raw = top.raw("roles")
    if not isinstance(roles_raw, dict) or not roles_raw:
        raise ConfigError(f"roles must name the {', '.join(ROLE_KINDS)} roles, got {roles_raw!r}")
    r = top.section("roles")
    r.unknown(set(ROLE_KINDS))
    roles = {kind: r.string(kind, NAME, "IAM role name") for kind in ROLE_KINDS}
    if len(set(roles.values())) != len(roles):
        raise ConfigError(f"roles: each role needs its own name, got {roles}")

    e = top.section("eks")
    e.unknown({"namespace", "serving_service_account", "operator_service_account", "operator_sagemaker_sync"})
    eks = EksConfig(
        namespace=e.string("namespace", K8S_NAME, "Kubernetes namespace"),
        serving_service_account=e.string("serving_service_account", K8S_NAME, "ServiceAccount name"),
        operator_service_account=e.string("operator_service_account", K8S_NAME, "ServiceAccount name"),
        operator_sagemaker_sync=_flag(e, "operator_sagemaker_sync"),
    )

    repos = top.raw("ecr_repositories")
    if not isinstance(repos, list) or len(repos) != len(IMAGE_KINDS):
        raise ConfigError(
            "ecr_repositories must name two ECR repositories, the serving image's then the operator image's "
            f'(["resnet-serving", "resnet-serving-operator"]), got {repos!r}'
        )
    repo_name = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
    for i, repo in enumerate(repos):
        # ECR's own limits: 2-256 characters of lowercase path segments.
        if not isinstance(repo, str) or not repo_name.match(repo) or not 2 <= len(repo) <= 256:
            raise ConfigError(f"ecr_repositories[{i}] is not a valid ECR repository name: {repo!r}")
    if len(set(repos)) != len(repos):
        raise ConfigError(f"ecr_repositories: the serving and operator images need a repository each, got {repos!r}")

    a = top.section("api")
    _moved(a)
    a.unknown(
        {"name", "stage", "model", "oauth_scope", "eks_integration"}
    )  # fmt: skip
    api = ApiConfig(
        name=a.string("name", NAME, "API name"),
        stage=a.string("stage", re.compile(r"^[A-Za-z0-9_]{1,128}$"), "stage name"),
        model=a.string("model", re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$"), "model name"),
        throttle_rate=limits.front_door.throttle_rate,
        throttle_burst=limits.front_door.throttle_burst,
        waf_rate_limit_per_5min=limits.front_door.waf_rate_limit_per_5min,
        oauth_scope=a.string("oauth_scope", re.compile(r"^[\x21\x23-\x2e\x30-\x5b\x5d-\x7e]+$"), "OAuth scope"),
        eks_integration=_eks_integration(a),
    )

    m = top.section("sagemaker")
    _moved(m)
    m.unknown({"endpoint_name", "variant_name", "deployer_principals"})
    sagemaker = SageMakerConfig(
        endpoint_name=m.string("endpoint_name", ENDPOINT_NAME, "SageMaker endpoint name"),
        variant_name=m.string("variant_name", ENDPOINT_NAME, "SageMaker variant name"),
        max_instances=limits.sagemaker.max_instances,
        deployer_principals=_principals(m, "deployer_principals"),
    )

    al = top.section("alarms")
    al.unknown({"p99_latency_ms", "error_5xx_percent", "throttled_requests_per_minute", "evaluation_periods"})
    alarms = AlarmConfig(
        p99_latency_ms=al.number("p99_latency_ms"),
        error_5xx_percent=al.number("error_5xx_percent"),
        throttled_requests_per_minute=al.number("throttled_requests_per_minute"),
        evaluation_periods=al.integer("evaluation_periods"),
    )
    if alarms.error_5xx_percent > 100:
        raise ConfigError(f"alarms.error_5xx_percent must be at most 100, got {alarms.error_5xx_percent!r}")

    retention = top.raw("log_retention_days")
    if isinstance(retention, bool) or retention not in LOG_RETENTION_DAYS:
        raise ConfigError(
            f"log_retention_days must be one of CloudWatch Logs' values {', '.join(map(str, LOG_RETENTION_DAYS))}; "
            f"got {retention!r}"
        )

    b = top.section("budget")
    _moved(b)
    b.unknown({"alert_percent"})
    budget = BudgetConfig(monthly_usd=limits.budget.monthly_usd, alert_percent=b.number("alert_percent"))

    return InfraConfig(
        project=top.string("project", re.compile(r"^[a-z][a-z0-9-]{1,30}$"), "project name"),
        store=store,
        roles=roles,
        eks=eks,
        ecr_repositories=tuple(repos),
        api=api,
        sagemaker=sagemaker,
        alarms=alarms,
        log_retention_days=int(retention),
        budget=budget,
    )


def load(path: Path = DEFAULT_CONFIG) -> InfraConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the infra config ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return parse(data, path.parent)
