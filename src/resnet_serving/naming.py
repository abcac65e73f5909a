"""The one owner of the AWS names other tools must predict: the stacks, the alarms, the dashboard.

``infra/`` (its ``resnet_infra/naming.py`` re-exports this module) and ``sagemaker/`` import it; the chart's
CloudWatch example, which cannot, is held to it by ``tests/chart/test_cloudwatch_example.py``.

Alarm names: ``resnet-serving-<endpoint>-<kind>`` for the observability stack's, and the same followed by
``-<owner>`` for every other owner (``-deploy``: what ``resnet-serving sagemaker deploy`` creates when the
stack's are missing; ``-eks``: the chart's example). PutMetricAlarm replaces a whole alarm, so two owners
must never share a name: a name's last segment says whose it is, and since no kind ends in an owner's segment
the owners' names are disjoint for every endpoint, hyphens in it included.
"""

from __future__ import annotations

PROJECT = "resnet-serving"
ALARM_KINDS = (
    *("5xx", "p99-latency", "throttles", "instances-at-max"),
    # what the client sees through the front door (API Gateway), and silence where it means down
    *("api-errors", "api-latency", "unavailable"),
    # the EKS ALB's own: targets failing its health check, and its own 5xx (no healthy target, timeouts)
    *("unhealthy-hosts", "lb-errors"),
)
# The alarms that mean "this deployment is bad": guardrails roll back when one of them fires.
GUARDRAIL_ALARM_KINDS = ("5xx", "p99-latency")

#: The owners of alarms: the observability stack, `sagemaker deploy`, the chart's CloudWatch example.
STACK, DEPLOY, EKS = "stack", "deploy", "eks"
#: What each owner appends to ``resnet-serving-<endpoint>-<kind>``; the stack's names are the bare rule.
ALARM_OWNER_SUFFIX = {STACK: "", DEPLOY: "-deploy", EKS: "-eks"}

STACKS = {
    "store": f"{PROJECT}-store",
    "roles": f"{PROJECT}-roles",
    "network": f"{PROJECT}-network",
    "frontdoor": f"{PROJECT}-frontdoor",
    "observability": f"{PROJECT}-observability",
}


def alarm_name(endpoint: str, kind: str, owner: str = STACK) -> str:
    """``resnet-serving-<endpoint>-<kind>`` for the stack, with ``-<owner>`` appended for any other owner."""
    if kind not in ALARM_KINDS:
        raise ValueError(f"unknown alarm kind {kind!r}; expected one of {', '.join(ALARM_KINDS)}")
    if owner not in ALARM_OWNER_SUFFIX:
        raise ValueError(f"unknown alarm owner {owner!r}; expected one of {', '.join(ALARM_OWNER_SUFFIX)}")
    return f"{PROJECT}-{endpoint}-{kind}{ALARM_OWNER_SUFFIX[owner]}"


def guardrail_alarm_names(endpoint: str, owner: str = STACK) -> tuple[str, ...]:
    """The owner's alarms that SageMaker's deployment guardrails roll back on, in GUARDRAIL_ALARM_KINDS order."""
    return tuple(alarm_name(endpoint, kind, owner) for kind in GUARDRAIL_ALARM_KINDS)


def alarm_owner(name: str) -> str | None:
    """Whose alarm ``name`` is by the rule above, or None when it follows no owner's rule."""
    prefix = f"{PROJECT}-"
    owners = {
        owner
        for owner, suffix in ALARM_OWNER_SUFFIX.items()
        for kind in ALARM_KINDS
        if name.startswith(prefix) and name.endswith(f"-{kind}{suffix}") and len(name) > len(f"{prefix}-{kind}{suffix}")
    }
    return owners.pop() if len(owners) == 1 else None


def dashboard_name(endpoint: str) -> str:
    return f"{PROJECT}-{endpoint}"
