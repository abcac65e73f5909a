"""Names other tools must be able to predict: the stacks, the alarms, the dashboard.

The rule lives in the package, ``resnet_serving.naming``, so that `resnet-serving sagemaker deploy` reads the
stack's alarms by the names this stack gives them, and names its own so that it never takes one of them;
infra/README.md states it. This module only re-exports it for the stacks.
"""

from __future__ import annotations

from resnet_serving.naming import (
    ALARM_KINDS,
    ALARM_OWNER_SUFFIX,
    DEPLOY,
    GUARDRAIL_ALARM_KINDS,
    PROJECT,
    STACK,
    STACKS,
    alarm_name,
    dashboard_name,
    guardrail_alarm_names,
)

__all__ = [
    "ALARM_KINDS",
    "ALARM_OWNER_SUFFIX",
    "DEPLOY",
    "GUARDRAIL_ALARM_KINDS",
    "PROJECT",
    "STACK",
    "STACKS",
    "alarm_name",
    "dashboard_name",
    "guardrail_alarm_names",
]
