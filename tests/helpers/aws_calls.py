"""Record the AWS calls the project's code makes, and turn each into the IAM actions and resource ARNs it needs.

The project builds its clients in two places, each from a fresh ``boto3.session.Session()`` (store/s3.py,
sagemaker/aws.py), and takes no client or session from outside on the CLI paths. So :func:`recording` wraps
``boto3.session.Session.__init__`` while it is active and registers two botocore event hooks on every session
made meanwhile: ``before-parameter-build`` (the operation and the caller's parameters, before any request is
sent, so a call the endpoint refuses or answers 500 is still recorded) and ``after-call`` (the parsed answer:
the KMS key S3 says it used).

:meth:`Recorder.accesses` maps each call to what IAM evaluates, including the actions a call implies that users
trip on: KMS for SSE-KMS objects (GetObject → ``kms:Decrypt``, PutObject → ``kms:GenerateDataKey``, a multipart
upload → both), ``iam:PassRole`` for CreateModel, ``sagemaker:AddTags`` for tags given at creation,
``cloudwatch:TagResource`` for alarm tags, and what Application Auto Scaling checks of its caller. An operation
it has no mapping for raises :class:`UnmappedCall`: a new code path must be mapped, not skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3.session

from tests.helpers.iam_eval import ACCOUNT, PARTITION, REGION

#: boto3 service name → IAM action prefix.
IAM_PREFIX = {
    "s3": "s3",
    "kms": "kms",
    "sagemaker": "sagemaker",
    "sagemaker-runtime": "sagemaker",
    "application-autoscaling": "application-autoscaling",
    "cloudwatch": "cloudwatch",
}
#: Context keys every request carries in production. aws:SecureTransport: boto3 talks HTTPS to AWS (moto's
#: loopback endpoint is plain HTTP, which is not what the policies will see).
BASE_CONTEXT = {"aws:SecureTransport": "true", "aws:PrincipalAccount": ACCOUNT}
S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "GetObjectAttributes": "s3:GetObjectAttributes",
}


class UnmappedCall(Exception):
    """A call this module cannot translate into IAM actions: map it before trusting the check."""


@dataclass(frozen=True)
class Call:
    service: str
    """boto3's service name (``s3``, ``sagemaker``, ``cloudwatch``, ...)."""
    operation: str
    params: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Access:
    """One IAM authorization a call needs: ``action`` on ``resource`` with ``context``; ``cause`` says why."""

    action: str
    resource: str
    cause: str
    context: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False)


class Recorder:
    """The calls made by clients created while :func:`recording` is active, in order."""

    def __init__(self, *, default_kms: dict[str, str] | None = None) -> None:
        self.calls: list[Call] = []
        self.default_kms = dict(default_kms or {})
        """Bucket → the KMS key ARN of its default encryption (S3 does not echo it for every operation)."""
        self._lock = threading.Lock()

    # ---- botocore event hooks ------------------------------------------------------------------------------
    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        call = Call(service, model.name, dict(params), {})
        context["aws_calls.record"] = call
        with self._lock:
            self.calls.append(call)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call = context.get("aws_calls.record")
        if call is not None and isinstance(parsed, dict):
            call.response.update({k: v for k, v in parsed.items() if k != "Body"})

    def register(self, session: boto3.session.Session) -> None:
        session.events.register("before-parameter-build", self._before)
        session.events.register("after-call", self._after)

    # ---- calls → IAM -----------------------------------------------------------------------------------------
    def accesses(self) -> list[Access]:
        """Every (action, resource) the recorded calls need, first occurrence first, duplicates dropped."""
        seen: dict[tuple[str, str, tuple[tuple[str, str | None], ...]], Access] = {}
        state = _State(dict(self.default_kms))
        for call in self.calls:
            if call.service not in IAM_PREFIX:
                raise UnmappedCall(f"{call.service} {call.operation}: no IAM prefix for this service")
            for access in _map(call, state):
                ctx = {**BASE_CONTEXT, **access.context}
                full = Access(access.action, access.resource, access.cause, ctx)
                seen.setdefault((full.action, full.resource, tuple(sorted(ctx.items()))), full)
        return list(seen.values())

    def execution_role_accesses(self) -> list[Access]:
        """What the SageMaker endpoint's container does with its execution role, from the recorded deploy: read
        each CreateModel's ModelDataUrl (and its KMS key), pull its image from ECR, write the endpoint's logs to
        the log group the observability stack creates."""
        out: dict[tuple[str, str], Access] = {}
        state = _State(dict(self.default_kms))
        for call in self.calls:
            _map(call, state)  # for the KMS key of each object written
            p = call.params
            if (call.service, call.operation) == ("sagemaker", "CreateModel"):
                container = p.get("PrimaryContainer") or (p.get("Containers") or [{}])[0]
                url = container.get("ModelDataUrl", "")
                if url.startswith("s3://"):
                    bucket, _, key = url[5:].partition("/")
                    obj = s3_object_arn(bucket, key)
                    out[("s3:GetObject", obj)] = Access("s3:GetObject", obj, "CreateModel ModelDataUrl")
                    kms = state.object_keys.get((bucket, key)) or state.default_kms.get(bucket)
                    if kms:
                        out[("kms:Decrypt", kms)] = Access("kms:Decrypt", kms, "ModelDataUrl (SSE-KMS)", _via("s3"))
                image = container.get("Image", "")
                registry, _, rest = image.partition("/")
                repo = rest.split("@")[0].split(":")[0]
                if ".dkr.ecr." in registry and repo:
                    account, region = registry.split(".")[0], registry.split(".")[3]
                    arn = f"arn:{PARTITION}:ecr:{region}:{account}:repository/{repo}"
                    for action in (
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:BatchGetImage",
                    ):
                        out[(action, arn)] = Access(action, arn, f"pull {image}")
                    out[("ecr:GetAuthorizationToken", "*")] = Access("ecr:GetAuthorizationToken", "*", "ECR login")
            if (call.service, call.operation) == ("sagemaker", "CreateEndpoint"):
                group = (
                    f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{p['EndpointName']}"
                )
                stream = f"{group}:log-stream:AllTraffic/i-0123456789abcdef0"
                for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
                    out[(action, stream)] = Access(action, stream, f"endpoint {p['EndpointName']} logs")
        return [
            Access(a.action, a.resource, a.cause, {**BASE_CONTEXT, **a.context, "aws:SecureTransport": "true"})
            for a in out.values()
        ]


@dataclass
class _State:
    default_kms: dict[str, str]
    object_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    """(bucket, key) → the KMS key ARN S3 reported or was asked to use for it."""
    config_keys: dict[str, str] = field(default_factory=dict)
    """SageMaker endpoint config name → its KmsKeyId."""


def s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


def kms_arn(key_id: str) -> str:
    return key_id if key_id.startswith("arn:") else f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{key_id}"


def _via(service: str) -> dict[str, str | None]:
    return {"kms:ViaService": f"{service}.{REGION}.amazonaws.com", "kms:GrantIsForAWSResource": None}


def sm_arn(kind: str, name: str) -> str:
    """SageMaker ARNs carry the resource name in lower case."""
    return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def alarm_arn(name: str) -> str:
    return f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}"


def _map(call: Call, state: _State) -> list[Access]:
    if (call.service, call.operation) == ("s3", "CreateMultipartUpload"):
        return _s3_multipart(call, state)
    mapper = {
        "s3": _s3,
        "sagemaker": _sagemaker,
        "sagemaker-runtime": _sagemaker,
        "cloudwatch": _cloudwatch,
        "application-autoscaling": _autoscaling,
    }.get(call.service)
    if mapper is None:
        raise UnmappedCall(f"{call.service} {call.operation}: not mapped to IAM actions")
    return mapper(call, state)


def _s3(call: Call, state: _State) -> list[Access]:
    op, p, r = call.operation, call.params, call.response
    bucket = p.get("Bucket", "")
    bucket_arn = f"arn:{PARTITION}:s3:::{bucket}"
    out: list[Access] = []

    def key_of_write() -> str | None:
        wanted = p.get("SSEKMSKeyId") or r.get("SSEKMSKeyId")
        if wanted:
            return kms_arn(wanted)
        if p.get("ServerSideEncryption") == "AES256":
            return None
        return state.default_kms.get(bucket)

    if op in ("ListObjectsV2", "ListObjects"):
        return [Access("s3:ListBucket", bucket_arn, op, {"s3:prefix": p.get("Prefix", ""), "s3:delimiter": None})]
    if op == "ListObjectVersions":
        return [Access("s3:ListBucketVersions", bucket_arn, op, {"s3:prefix": p.get("Prefix", "")})]
    if op == "HeadBucket":
        return [Access("s3:ListBucket", bucket_arn, op, {"s3:prefix": None})]
    if op == "DeleteObject":
        action = "s3:DeleteObjectVersion" if p.get("VersionId") else "s3:DeleteObject"
        return [Access(action, s3_object_arn(bucket, p["Key"]), op)]
    if op == "CopyObject":
        src = p["CopySource"]
        if isinstance(src, str):
            src_bucket, _, src_key = src.lstrip("/").partition("/")
        else:
            src_bucket, src_key = src["Bucket"], src["Key"]
        out.append(Access("s3:GetObject", s3_object_arn(src_bucket, src_key), "CopyObject source"))
        out.append(Access("s3:PutObject", s3_object_arn(bucket, p["Key"]), "CopyObject"))
        src_kms = state.object_keys.get((src_bucket, src_key)) or state.default_kms.get(src_bucket)
        if src_kms:
            out.append(Access("kms:Decrypt", src_kms, "CopyObject reads an SSE-KMS source", _via("s3")))
        dest_kms = key_of_write()
        if dest_kms:
            state.object_keys[(bucket, p["Key"])] = dest_kms
            out.append(Access("kms:GenerateDataKey", dest_kms, "CopyObject writes SSE-KMS", _via("s3")))
        return out
    if op not in S3_OBJECT_ACTIONS:
        raise UnmappedCall(f"s3 {op}: not mapped to IAM actions")
    key = p["Key"]
    out.append(Access(S3_OBJECT_ACTIONS[op], s3_object_arn(bucket, key), op))
    if op == "GetObject":
        used = r.get("SSEKMSKeyId") or (
            state.object_keys.get((bucket, key)) or state.default_kms.get(bucket)
            if r.get("ServerSideEncryption", "aws:kms") == "aws:kms"
            else None
        )
        if used:
            out.append(Access("kms:Decrypt", kms_arn(used), "GetObject of an SSE-KMS object", _via("s3")))
    elif op == "PutObject":
        kms = key_of_write()
        if kms:
            state.object_keys[(bucket, key)] = kms
            out.append(Access("kms:GenerateDataKey", kms, "PutObject with SSE-KMS", _via("s3")))
    return out


def _s3_multipart(call: Call, state: _State) -> list[Access]:
    p = call.params
    bucket, key = p["Bucket"], p["Key"]
    out = [Access("s3:PutObject", s3_object_arn(bucket, key), "CreateMultipartUpload")]
    wanted = p.get("SSEKMSKeyId")
    kms = kms_arn(wanted) if wanted else state.default_kms.get(bucket)
    if kms:
        state.object_keys[(bucket, key)] = kms
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):  # S3 decrypts the data key for each part
            out.append(Access(action, kms, "multipart upload with SSE-KMS", _via("s3")))
    return out


def _tags_on_create(call: Call, arn: str) -> list[Access]:
    return [Access("sagemaker:AddTags", arn, f"{call.operation} with Tags")] if call.params.get("Tags") else []


def _sagemaker(call: Call, state: _State) -> list[Access]:
    op, p, r = call.operation, call.params, call.response
    action = f"sagemaker:{op}"
    if call.service == "sagemaker-runtime":
        return [Access(action, sm_arn("endpoint", p["EndpointName"]), op)]
    if op in ("CreateModel", "DescribeModel", "DeleteModel"):
        arn = sm_arn("model", p["ModelName"])
        out = [Access(action, arn, op)]
        if op == "CreateModel":
            out += _tags_on_create(call, arn)
            out.append(
                Access(
                    "iam:PassRole",
                    p["ExecutionRoleArn"],
                    "CreateModel passes its execution role",
                    {"iam:PassedToService": "sagemaker.amazonaws.com", "iam:AssociatedResourceARN": arn},
                )
            )
        return out
    if op in ("CreateEndpointConfig", "DescribeEndpointConfig", "DeleteEndpointConfig"):
        name = p["EndpointConfigName"]
        arn = sm_arn("endpoint-config", name)
        out = [Access(action, arn, op)]
        key = p.get("KmsKeyId") or r.get("KmsKeyId")
        if key:
            state.config_keys[name] = kms_arn(key)
        if op == "CreateEndpointConfig":
            out += _tags_on_create(call, arn)
            if key:
                out.append(
                    Access("kms:DescribeKey", kms_arn(key), "CreateEndpointConfig with KmsKeyId", _via("sagemaker"))
                )
        return out
    if op in ("CreateEndpoint", "UpdateEndpoint"):
        name, config = p["EndpointName"], p["EndpointConfigName"]
        arn = sm_arn("endpoint", name)
        out = [Access(action, arn, op), Access(action, sm_arn("endpoint-config", config), f"{op} (its config)")]
        if op == "CreateEndpoint":
            out += _tags_on_create(call, arn)
        key = state.config_keys.get(config)
        if key:
            grant = {**_via("sagemaker"), "kms:GrantIsForAWSResource": "true"}
            out.append(Access("kms:CreateGrant", key, f"{op}: volumes encrypted with the config's key", grant))
        return out
    if op in ("DescribeEndpoint", "DeleteEndpoint", "UpdateEndpointWeightsAndCapacities"):
        return [Access(action, sm_arn("endpoint", p["EndpointName"]), op)]
    if op in ("ListTags", "AddTags", "DeleteTags"):
        return [Access(action, p["ResourceArn"], op)]
    if op in ("ListEndpoints", "ListEndpointConfigs", "ListModels"):
        return [Access(action, "*", op)]
    raise UnmappedCall(f"sagemaker {op}: not mapped to IAM actions")


def _cloudwatch(call: Call, state: _State) -> list[Access]:
    op, p = call.operation, call.params
    action = f"cloudwatch:{op}"
    if op in ("DescribeAlarms", "DeleteAlarms"):
        names = p.get("AlarmNames") or []
        if not names:
            return [Access(action, "*", op)]
        return [Access(action, alarm_arn(n), op) for n in names]
    if op == "PutMetricAlarm":
        arn = alarm_arn(p["AlarmName"])
        tags = [Access("cloudwatch:TagResource", arn, "PutMetricAlarm with Tags")] if p.get("Tags") else []
        return [Access(action, arn, op), *tags]
    if op in ("ListTagsForResource", "TagResource", "UntagResource"):
        return [Access(action, p["ResourceARN"], op)]
    raise UnmappedCall(f"cloudwatch {op}: not mapped to IAM actions")


def _target_tracking_alarms(resource_id: str) -> list[str]:
    """The alarms Application Auto Scaling makes for a target-tracking policy (a generated id ends each name)."""
    suffix = "00000000-0000-0000-0000-000000000000"
    return [alarm_arn(f"TargetTracking-{resource_id}-{kind}-{suffix}") for kind in ("AlarmHigh", "AlarmLow")]


def _autoscaling(call: Call, state: _State) -> list[Access]:
    op, p, r = call.operation, call.params, call.response
    action = f"application-autoscaling:{op}"
    if op.startswith("Describe"):
        return [Access(action, "*", op)]
    if op not in ("RegisterScalableTarget", "DeregisterScalableTarget", "PutScalingPolicy", "DeleteScalingPolicy"):
        raise UnmappedCall(f"application-autoscaling {op}: not mapped to IAM actions")
    # A scalable target's ARN ends in a generated id: the answer's, else a literal * (matched only by a wildcard)
    target = (
        r.get("ScalableTargetARN") or f"arn:{PARTITION}:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/*"
    )
    ctx: dict[str, str | None] = {
        "application-autoscaling:service-namespace": p.get("ServiceNamespace"),
        "application-autoscaling:scalable-dimension": p.get("ScalableDimension"),
    }
    out = [Access(action, target, op, ctx)]
    rid = p.get("ResourceId", "")
    parts = rid.split("/")
    if p.get("ServiceNamespace") == "sagemaker" and len(parts) == 4 and parts[0] == "endpoint":
        endpoint = sm_arn("endpoint", parts[1])
        alarms = _target_tracking_alarms(rid)
        if op == "RegisterScalableTarget":
            slr = (
                f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
            )
            out.append(
                Access(
                    "iam:CreateServiceLinkedRole",
                    slr,
                    "the first RegisterScalableTarget creates the service-linked role",
                    {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"},
                )
            )
            for a in ("sagemaker:DescribeEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities"):
                out.append(Access(a, endpoint, "RegisterScalableTarget checks the variant"))
        elif op == "PutScalingPolicy":
            for arn in alarms:
                for a in ("cloudwatch:DescribeAlarms", "cloudwatch:PutMetricAlarm"):
                    out.append(Access(a, arn, "PutScalingPolicy makes the target-tracking alarms"))
        else:
            for arn in alarms:
                for a in ("cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"):
                    out.append(Access(a, arn, f"{op} removes the target-tracking alarms"))
    return out


@contextmanager
def recording(*, default_kms: dict[str, str] | None = None) -> Iterator[Recorder]:
    """Record every call made by clients of boto3 sessions created inside the ``with`` block."""
    recorder = Recorder(default_kms=default_kms)
    original = boto3.session.Session.__init__

    def init(self: boto3.session.Session, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        recorder.register(self)

    boto3.session.Session.__init__ = init  # type: ignore[method-assign]
    try:
        yield recorder
    finally:
        boto3.session.Session.__init__ = original  # type: ignore[method-assign]
