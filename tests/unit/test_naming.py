"""resnet_serving.naming: one rule for the AWS names infra/, `sagemaker deploy` and the chart's example share.

The owners' alarm names must be disjoint for every endpoint, not only the committed one: endpoint names may hold
hyphens, so an endpoint that ends like an owner's segment or a kind must not make one owner's name another's.
"""

from __future__ import annotations

import itertools
import sys

import pytest

from resnet_serving import naming
from resnet_serving.sagemaker import spec
from tests.helpers import REPO

#: Endpoints chosen to collide under a careless rule: ones ending like an owner's segment or like a kind.
TRICKY_ENDPOINTS = ("resnet50", "x", "x-deploy", "x-eks", "x-5xx", "x-5xx-deploy", "p99-latency", "a-b-c")


def test_the_stacks_names_are_the_bare_rule() -> None:
    """The names the committed templates hold: changing them would change the stack (see infra/README.md)."""
    assert naming.alarm_name("resnet50", "5xx") == "resnet-serving-resnet50-5xx"
    assert naming.alarm_name("resnet50", "p99-latency", naming.STACK) == "resnet-serving-resnet50-p99-latency"
    assert naming.guardrail_alarm_names("ep") == ("resnet-serving-ep-5xx", "resnet-serving-ep-p99-latency")
    assert naming.dashboard_name("ep") == "resnet-serving-ep"


def test_deploys_names_are_its_own() -> None:
    assert spec.alarm_names("ep") == ("resnet-serving-ep-5xx-deploy", "resnet-serving-ep-p99-latency-deploy")
    assert spec.stack_alarm_names("ep") == naming.guardrail_alarm_names("ep", naming.STACK)
    assert not set(spec.alarm_names("ep")) & set(spec.stack_alarm_names("ep"))


def test_owners_names_are_disjoint_for_any_endpoint() -> None:
    names = {
        (endpoint, kind, owner): naming.alarm_name(endpoint, kind, owner)
        for endpoint, kind, owner in itertools.product(TRICKY_ENDPOINTS, naming.ALARM_KINDS, naming.ALARM_OWNER_SUFFIX)
    }
    owners_of: dict[str, set[str]] = {}
    for (_, _, owner), name in names.items():
        owners_of.setdefault(name, set()).add(owner)
    shared = {name: owners for name, owners in owners_of.items() if len(owners) > 1}
    assert shared == {}, "one alarm name, several owners"
    for (_, _, owner), name in names.items():
        assert naming.alarm_owner(name) == owner, name
    # the property the disjointness rests on: no kind ends in an owner's segment
    for kind, suffix in itertools.product(naming.ALARM_KINDS, naming.ALARM_OWNER_SUFFIX.values()):
        assert not suffix or not f"-{kind}".endswith(suffix), (kind, suffix)


@pytest.mark.parametrize(
    "name", ["resnet-serving-5xx", "other-ep-5xx", "resnet-serving-ep-latency", "resnet-serving-ep-5xx-team"]
)
def test_names_outside_the_rule_have_no_owner(name: str) -> None:
    assert naming.alarm_owner(name) is None


def test_unknown_kind_or_owner_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown alarm kind 'cpu'"):
        naming.alarm_name("ep", "cpu")
    with pytest.raises(ValueError, match="unknown alarm owner 'team'"):
        naming.alarm_name("ep", "5xx", "team")


def test_infra_imports_the_rule_instead_of_defining_it() -> None:
    """infra/resnet_infra/naming.py re-exports the package's objects: one definition, two importers."""
    sys.path.insert(0, str(REPO / "infra"))
    try:
        from resnet_infra import naming as infra_naming
    finally:
        sys.path.remove(str(REPO / "infra"))
    for name in infra_naming.__all__:
        assert getattr(infra_naming, name) is getattr(naming, name), name
    source = (REPO / "infra" / "resnet_infra" / "naming.py").read_text(encoding="utf-8")
    assert "def " not in source and "from resnet_serving.naming import" in source
