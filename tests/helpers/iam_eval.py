"""A small evaluator of the IAM policies in the synthesized CloudFormation templates (infra/templates/*.json).

It answers one question: may this role perform this action on this resource, given the role's identity policies
and the resource's policy (an S3 bucket policy or a KMS key policy)? The rules, as AWS documents them for
requests within one account:

* an explicit ``Deny`` that matches, in any of the policies, wins;
* S3: allowed when the identity policy or the bucket policy allows (a bucket policy that names the account's
  root only delegates to the identity policy);
* KMS: the key policy must allow, either naming the role (or ``*``) or delegating to IAM through the account's
  root, in which case the identity policy must allow as well;
* anything else: the identity policy must allow.

What it does not evaluate fails loudly rather than allowing: an unknown condition operator, a policy variable
(``${aws:username}``), a condition key the request context does not mention (pass ``None`` for a key that is
really absent from the request), managed policy ARNs and intrinsic functions it cannot resolve. Not modelled at
all: SCPs, RCPs, permission boundaries, session policies, cross-account access, grants.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"

Context = Mapping[str, "str | Sequence[str] | None"]


class PolicyError(Exception):
    """The evaluator met something it cannot evaluate: the check must fail, never guess."""


# ---- CloudFormation: resolve the intrinsic functions the templates use -------------------------------------------


@dataclass
class Template:
    """One synthesized template, its intrinsic functions resolved with a fixed account, region and partition.

    ``attrs`` supplies ``Fn::GetAtt`` values the template cannot tell (a KMS key's ARN), keyed ``"Logical.Attr"``;
    ``imports`` supplies ``Fn::ImportValue`` values (another stack's exports, see :func:`exports`).
    """

    body: dict[str, Any]
    name: str = "template"
    attrs: dict[str, str] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, **kwargs: Any) -> Template:
        return cls(json.loads(path.read_text(encoding="utf-8")), name=path.name, **kwargs)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.body.get("Resources", {}))

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name.removesuffix(".json"),
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.resources.get(name)
        if resource is not None:
            props = resource.get("Properties", {})
            named = {"AWS::IAM::Role": "RoleName", "AWS::S3::Bucket": "BucketName"}.get(resource["Type"])
            if named and named in props:
                return str(self.resolve(props[named]))
            # CloudFormation names it itself: a stand-in, unique per template and logical id
            return f"{self.ref('AWS::StackName')}-{name}".lower()
        raise PolicyError(f"{self.name}: cannot resolve Ref {name}")

    def get_att(self, logical: str, attr: str) -> str:
        if f"{logical}.{attr}" in self.attrs:
            return self.attrs[f"{logical}.{attr}"]
        resource = self.resources.get(logical)
        if resource is not None and attr == "Arn":
            if resource["Type"] == "AWS::IAM::Role":
                return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.ref(logical)}"
            if resource["Type"] == "AWS::S3::Bucket":
                return f"arn:{PARTITION}:s3:::{self.ref(logical)}"
        raise PolicyError(f"{self.name}: cannot resolve Fn::GetAtt {logical}.{attr} (pass it in attrs)")

    def sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
            return {k: self.resolve(v) for k, v in value.items()}
        fn, arg = next(iter(value.items()))
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(logical, attr)
        if fn == "Fn::Join":
            return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return self.sub(text, variables)
        if fn == "Fn::Select":
            return self.resolve(arg[1])[int(self.resolve(arg[0]))]
        if fn == "Fn::Split":
            return str(self.resolve(arg[1])).split(arg[0])
        if fn == "Fn::ImportValue":
            name = self.resolve(arg)
            if name not in self.imports:
                raise PolicyError(f"{self.name}: cannot resolve Fn::ImportValue {name} (pass it in imports)")
            return self.imports[name]
        raise PolicyError(f"{self.name}: unsupported intrinsic function {fn}")

    def exports(self) -> dict[str, str]:
        """``Export.Name`` → value of every output this template exports (for another template's ``imports``)."""
        out = {}
        for output in self.body.get("Outputs", {}).values():
            if "Export" in output:
                out[str(self.resolve(output["Export"]["Name"]))] = str(self.resolve(output["Value"]))
        return out

    def identity_policies(self, role_arn: str) -> list[Policy]:
        """The policy documents attached to the role whose ARN is ``role_arn`` (inline and AWS::IAM::Policy)."""
        role_ids = [
            lid
            for lid, r in self.resources.items()
            if r["Type"] == "AWS::IAM::Role" and self.get_att(lid, "Arn") == role_arn
        ]
        policies: list[Policy] = []
        for lid in role_ids:
            props = self.resources[lid].get("Properties", {})
            if props.get("ManagedPolicyArns") or props.get("PermissionsBoundary"):
                raise PolicyError(f"{self.name}: {lid} has managed policies or a boundary, which are not evaluated")
            for inline in props.get("Policies", []):
                policies.append(Policy(f"{lid}/{inline['PolicyName']}", self.resolve(inline["PolicyDocument"])))
        for lid, r in self.resources.items():
            if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                roles = r["Properties"].get("Roles", [])
                if any(isinstance(x, dict) and x.get("Ref") in role_ids for x in roles):
                    policies.append(Policy(lid, self.resolve(r["Properties"]["PolicyDocument"])))
        return policies

    def bucket_policies(self) -> dict[str, Policy]:
        """Bucket name → its bucket policy."""
        return {
            str(self.resolve(r["Properties"]["Bucket"])): Policy(lid, self.resolve(r["Properties"]["PolicyDocument"]))
            for lid, r in self.resources.items()
            if r["Type"] == "AWS::S3::BucketPolicy"
        }

    def key_policies(self) -> dict[str, Policy]:
        """Key ARN → its key policy."""
        return {
            self.get_att(lid, "Arn"): Policy(lid, self.resolve(r["Properties"]["KeyPolicy"]))
            for lid, r in self.resources.items()
            if r["Type"] == "AWS::KMS::Key"
        }


# ---- Policy documents ------------------------------------------------------------------------------------------


@dataclass
class Policy:
    name: str
    document: dict[str, Any]

    @property
    def statements(self) -> list[dict[str, Any]]:
        st = self.document.get("Statement", [])
        return [st] if isinstance(st, dict) else list(st)


@dataclass(frozen=True)
class Request:
    principal: str
    """The role's ARN, ``arn:aws:iam::ACCOUNT:role/NAME``."""
    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """What one policy (or set of identity policies) says: ``allow``, ``deny``, ``delegate`` or ``none``."""

    effect: str
    statement: str = ""

    def describe(self) -> str:
        return {
            "allow": f"allowed by statement {self.statement}",
            "deny": f"explicit deny in statement {self.statement}",
            "delegate": f"delegated to IAM by statement {self.statement}",
            "none": "no match",
        }[self.effect]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    identity: Verdict
    resource: Verdict | None = None
    resource_kind: str = ""

    def explain(self) -> str:
        parts = [f"identity policy: {self.identity.describe()}"]
        if self.resource is not None:
            parts.append(f"{self.resource_kind} policy: {self.resource.describe()}")
        return "; ".join(parts)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _wild(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character; nothing else is special."""
    if "${" in pattern:
        raise PolicyError(f"policy variables are not evaluated: {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _matches_action(statement: dict[str, Any], action: str) -> bool:
    if "Action" in statement:
        return any(_wild(p, action, case=False) for p in _as_list(statement["Action"]))
    if "NotAction" in statement:
        return not any(_wild(p, action, case=False) for p in _as_list(statement["NotAction"]))
    raise PolicyError(f"statement {statement.get('Sid', '?')} has neither Action nor NotAction")


def _matches_resource(statement: dict[str, Any], resource: str) -> bool:
    if "Resource" in statement:
        return any(_wild(p, resource, case=True) for p in _as_list(statement["Resource"]))
    if "NotResource" in statement:
        return not any(_wild(p, resource, case=True) for p in _as_list(statement["NotResource"]))
    raise PolicyError(f"statement {statement.get('Sid', '?')} has neither Resource nor NotResource")


def _account_of(principal: str) -> str:
    parts = principal.split(":")
    return parts[4] if len(parts) > 4 else ""


def _principal_match(statement: dict[str, Any], principal: str) -> str | None:
    """``"exact"`` (names this role or everyone), ``"account"`` (its account's root) or ``None``."""
    if "NotPrincipal" in statement:
        raise PolicyError(f"statement {statement.get('Sid', '?')}: NotPrincipal is not evaluated")
    spec = statement.get("Principal")
    if spec is None:
        raise PolicyError(f"resource policy statement {statement.get('Sid', '?')} has no Principal")
    if spec == "*":
        return "exact"
    if not isinstance(spec, dict):
        raise PolicyError(f"statement {statement.get('Sid', '?')}: unreadable Principal {spec!r}")
    found = None
    for kind, values in spec.items():
        for value in _as_list(values):
            if kind == "AWS":
                if value == "*" or value == principal:
                    return "exact"
                account = _account_of(principal)
                if value in (account, f"arn:{PARTITION}:iam::{account}:root"):
                    found = "account"
            elif kind in ("Service", "Federated", "CanonicalUser"):
                continue  # a role is none of these
            else:
                raise PolicyError(f"statement {statement.get('Sid', '?')}: unknown principal type {kind}")
    return found


# ---- Conditions ------------------------------------------------------------------------------------------------


def _string_op(base: str) -> tuple[Any, bool]:
    """(compare(policy_value, request_value), negated) for a condition operator without IfExists/ForXValue."""

    def arn_like(p: str, v: str) -> bool:
        # ARN matching is per colon-separated part; wildcards stay inside a part except in the last one
        pp, vp = p.split(":", 5), v.split(":", 5)
        return len(pp) == len(vp) and all(_wild(a, b, case=True) for a, b in zip(pp, vp, strict=True))

    def boolean(p: str, v: str) -> bool:
        if p.lower() not in ("true", "false"):
            raise PolicyError(f"Bool condition value {p!r} is neither true nor false")
        return p.lower() == v.lower()

    def number(cmp: Any) -> Any:
        return lambda p, v: cmp(float(v), float(p))

    ops: dict[str, Any] = {
        "StringEquals": lambda p, v: p == v,
        "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
        "StringLike": lambda p, v: _wild(p, v, case=True),
        "ArnEquals": arn_like,
        "ArnLike": arn_like,
        "Bool": boolean,
        "NumericEquals": number(lambda v, p: v == p),
        "NumericLessThan": number(lambda v, p: v < p),
        "NumericLessThanEquals": number(lambda v, p: v <= p),
        "NumericGreaterThan": number(lambda v, p: v > p),
        "NumericGreaterThanEquals": number(lambda v, p: v >= p),
    }
    negated = {
        "StringNotEquals": "StringEquals",
        "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
        "StringNotLike": "StringLike",
        "ArnNotEquals": "ArnEquals",
        "ArnNotLike": "ArnLike",
        "NumericNotEquals": "NumericEquals",
    }
    if base in ops:
        return ops[base], False
    if base in negated:
        return ops[negated[base]], True
    raise PolicyError(f"unknown or unsupported condition operator {base!r}")


def _lookup(context: Context, key: str) -> tuple[bool, list[str]]:
    """(present, values) of a context key; keys are case-insensitive. A key the context does not mention raises:
    the caller must say whether the real request carries it (``None`` means it does not)."""
    for k, v in context.items():
        if k.lower() == key.lower():
            if v is None:
                return False, []
            return True, [v] if isinstance(v, str) else [str(x) for x in v]
    raise PolicyError(f"the request context does not say whether it has the condition key {key!r}")


def condition_matches(condition: Mapping[str, Mapping[str, Any]], context: Context) -> bool:
    """All operators, all keys must match (AND); the values listed for one key are alternatives (OR)."""
    for operator, block in condition.items():
        for key, raw in block.items():
            policy_values = [str(x).lower() if isinstance(x, bool) else str(x) for x in _as_list(raw)]
            if not _one_condition(operator, key, policy_values, context):
                return False
    return True


def _one_condition(operator: str, key: str, policy_values: list[str], context: Context) -> bool:
    set_op, _, op = operator.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        raise PolicyError(f"unknown condition set operator {set_op!r}")
    if_exists = op.endswith("IfExists")
    compare, negated = (None, False) if op == "Null" else _string_op(op.removesuffix("IfExists"))
    present, values = _lookup(context, key)
    if op == "Null":
        if set_op:
            raise PolicyError(f"unsupported condition operator {operator!r}")
        want_absent = [p.lower() for p in policy_values]
        if any(p not in ("true", "false") for p in want_absent):
            raise PolicyError(f"Null condition value must be true or false: {policy_values}")
        return ("true" if not present else "false") in want_absent
    assert compare is not None
    if not present:
        if set_op == "ForAllValues":
            return True  # vacuously: no value fails
        if set_op == "ForAnyValue":
            return if_exists
        return if_exists or negated
    if set_op == "ForAllValues":
        return all(any(compare(p, v) for p in policy_values) != negated for v in values)
    hit = any(compare(p, v) for p in policy_values for v in values)
    return not hit if negated else hit


# ---- Evaluation ------------------------------------------------------------------------------------------------


def evaluate_policies(policies: Iterable[Policy], request: Request, *, resource_policy: bool = False) -> Verdict:
    """What ``policies`` say about ``request``: a matching Deny wins over any Allow, whatever the order."""
    allow: Verdict | None = None
    delegate: Verdict | None = None
    for policy in policies:
        for i, st in enumerate(policy.statements):
            sid = st.get("Sid") or f"{policy.name}[{i}]"
            effect = st.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise PolicyError(f"statement {sid}: Effect {effect!r}")
            match = "exact"
            if resource_policy:
                match = _principal_match(st, request.principal) or ""
                if not match:
                    continue
            elif "Principal" in st or "NotPrincipal" in st:
                raise PolicyError(f"identity policy statement {sid} names a principal")
            if not (_matches_action(st, request.action) and _matches_resource(st, request.resource)):
                continue
            if "Condition" in st and not condition_matches(st["Condition"], request.context):
                continue
            if effect == "Deny":
                return Verdict("deny", sid)
            if match == "exact":
                allow = allow or Verdict("allow", sid)
            else:
                delegate = delegate or Verdict("delegate", sid)
    return allow or delegate or Verdict("none")


def decide(
    request: Request,
    identity: Sequence[Policy],
    resource_policy: Policy | None = None,
    *,
    resource_kind: str = "",
) -> Decision:
    """The decision for ``request`` (same account). ``resource_kind`` is ``"bucket"`` or ``"key"`` when a resource
    policy applies: S3 allows on either side, KMS needs the key policy (or its delegation to IAM)."""
    ident = evaluate_policies(identity, request)
    if resource_policy is None:
        if resource_kind == "key":
            raise PolicyError(f"no key policy for {request.resource}: a KMS request cannot be evaluated without one")
        return Decision(ident.effect == "allow", ident)
    res = evaluate_policies([resource_policy], request, resource_policy=True)
    if "deny" in (ident.effect, res.effect):
        allowed = False
    elif resource_kind == "key":
        allowed = res.effect == "allow" or (res.effect == "delegate" and ident.effect == "allow")
    elif resource_kind == "bucket":
        allowed = ident.effect == "allow" or res.effect == "allow"
    else:
        raise PolicyError(f"unknown resource kind {resource_kind!r}")
    return Decision(allowed, ident, res, resource_kind)


def role_arn(name: str) -> str:
    return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}"
