"""Names other tools must be able to predict: the stacks, the alarms, the dashboard.

`resnet-serving sagemaker deploy` passes the alarm names to SageMaker's deployment guardrails, so the rule
lives here, in one place, and infra/README.md states it: resnet-serving-<endpoint>-<kind>.
"""

from __future__ import annotations

PROJECT = "resnet-serving"
ALARM_KINDS = ("5xx", "p99-latency", "throttles", "instances-at-max")
# The alarms that mean "this deployment is bad": guardrails roll back when one of them fires.
GUARDRAIL_ALARM_KINDS = ("5xx", "p99-latency")

STACKS = {
    "store": f"{PROJECT}-store",
    "roles": f"{PROJECT}-roles",
    "network": f"{PROJECT}-network",
    "frontdoor": f"{PROJECT}-frontdoor",
    "observability": f"{PROJECT}-observability",
}


def alarm_name(endpoint: str, kind: str) -> str:
    if kind not in ALARM_KINDS:
        raise ValueError(f"unknown alarm kind {kind!r}; expected one of {', '.join(ALARM_KINDS)}")
    return f"{PROJECT}-{endpoint}-{kind}"


def dashboard_name(endpoint: str) -> str:
    return f"{PROJECT}-{endpoint}"
