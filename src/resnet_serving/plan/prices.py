"""Prices are data: ``prices.json`` ships with the package, ``--prices FILE`` replaces it. Never fetched at run time.

Every entry carries ``source`` (the public AWS page it was read from), ``as_of`` (YYYY-MM-DD, the day it was
entered) and ``estimated`` (true where the figure was not confirmed against that page); rows priced from an
estimated entry say so. The whole file is checked when it is read, every region, and a bad entry is named in
the error (``regions.eu-west-1.ec2_on_demand.c7i.2xlarge: usd_per_hour is missing or not a positive number``).
The plan records each entry it reads, so it can print where every figure came from (:meth:`Prices.provenance`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from resnet_serving.errors import InputError

# Sections and the numeric fields each entry must have. Instance maps hold one such entry per instance type.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "eks_cluster": ("usd_per_hour",),
    "alb": ("usd_per_hour", "usd_per_lcu_hour", "processed_gb_per_lcu_hour"),
    "nat_gateway": ("usd_per_hour", "usd_per_gb_processed"),
    "vpc_endpoint_interface": ("usd_per_hour_per_az", "usd_per_gb_processed"),
    "sagemaker_serverless": ("usd_per_gb_second", "data_processing_usd_per_gb", "vcpus_per_gb"),
    "sagemaker_serverless_limits": ("max_concurrency", "max_payload_mb"),
    "api_gateway_rest": (),
    "api_gateway_http": ("metered_kb",),
    "waf": ("usd_per_web_acl_month", "usd_per_rule_month", "usd_per_million_requests"),
    "xray": ("usd_per_million_traces", "free_traces_per_month"),
    "kms": ("usd_per_key_month", "usd_per_10k_requests"),
    "cognito_m2m": ("usd_per_app_client_month", "usd_per_token_request"),
    "lambda": ("usd_per_million_requests", "usd_per_gb_second"),
    "data_transfer_out": ("usd_per_gb",),
    "cloudwatch": (
        "usd_per_metric_month",
        "usd_per_alarm_month",
        "usd_per_dashboard_month",
        "logs_usd_per_gb_ingested",
    ),
    "s3": ("usd_per_gb_month",),
    "ecr": ("usd_per_gb_month",),
}
_TIERED = ("api_gateway_rest", "api_gateway_http")
_INSTANCE_SECTIONS: dict[str, tuple[str, ...]] = {
    "ec2_on_demand": ("usd_per_hour", "vcpus", "memory_gib", "spot_usd_per_hour"),
    "sagemaker_realtime": ("usd_per_hour", "vcpus", "memory_gib"),
}
#: Instance sections a prices file may leave out, checked as the others when present. Without a Batch Transform
#: entry, ``plan --batch-images`` prices Batch Transform at the type's real-time rate and marks it estimated.
_OPTIONAL_INSTANCE_SECTIONS: dict[str, tuple[str, ...]] = {
    "sagemaker_batch_transform": ("usd_per_hour",),
}
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_TYPE = {
    "ec2_on_demand": re.compile(r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|metal|\d*xlarge)$"),
    "sagemaker_realtime": re.compile(r"^ml\.[a-z][a-z0-9-]*\.(medium|large|\d*xlarge)$"),
}
_TYPE["sagemaker_batch_transform"] = _TYPE["sagemaker_realtime"]


@dataclass(frozen=True)
class Prices:
    region: str
    hours_per_month: float
    file: str
    data: dict[str, Any]
    notes: str = ""
    #: entries read so far, "section" or "section.instance-type", in the order they were first read
    used: dict[str, None] = field(default_factory=dict, compare=False, repr=False)

    def entry(self, section: str, name: str | None = None) -> dict[str, Any]:
        sec = self.data[section]
        if name is None:
            self.used.setdefault(section)
            return dict(sec)
        if name not in sec:
            known = ", ".join(sorted(sec))
            raise InputError(
                f"unknown instance type {name!r} for {section} in region {self.region} of {self.file} (known: {known})"
            )
        self.used.setdefault(f"{section}.{name}")
        return dict(sec[name])

    def instance_types(self, section: str) -> list[str]:
        return sorted(self.data[section])

    def provenance(self) -> dict[str, Any]:
        """Where each figure the plan used came from: per entry its source, date and whether it is estimated."""
        entries: dict[str, dict[str, Any]] = {}
        for key in self.used:
            section, _, name = key.partition(".")
            e = self.data[section] if not name else self.data[section][name]
            entries[key] = {"source": e["source"], "as_of": e["as_of"], "estimated": bool(e.get("estimated"))}
        dates = sorted({e["as_of"] for e in entries.values()})
        return {
            "file": self.file,
            "region": self.region,
            "hours_per_month": self.hours_per_month,
            "as_of": dates,
            "notes": self.notes,
            "entries": entries,
        }


def _default_path() -> Any:
    return resources.files("resnet_serving.plan").joinpath("prices.json")


def load_prices(path: str | Path | None, region: str) -> Prices:
    """The price list for ``region`` from ``path`` (default: the packaged prices.json), checked entry by entry."""
    src = _default_path() if path is None else Path(path)
    name = "the packaged prices.json" if path is None else str(path)
    try:
        doc = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"no prices file at {name}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{name} is not a readable JSON prices file: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), dict) or not doc["regions"]:
        raise InputError(f"{name}: malformed prices file: expected an object with 'regions'")
    hours = doc.get("hours_per_month", 730)
    if not _num(hours):
        raise InputError(f"{name}: malformed prices file: hours_per_month must be a positive number")
    regions = doc["regions"]
    for r in regions:
        if not _REGION.match(r):
            raise InputError(f"{name}: malformed prices file: regions.{r}: not an AWS region name (like eu-west-1)")
        problem = _region_problem(regions[r])
        if problem:
            raise InputError(f"{name}: malformed prices file: regions.{r}.{problem}")
    if region not in regions:
        raise InputError(f"{name} has no prices for region {region!r} (it has: {', '.join(sorted(regions))})")
    notes = doc.get("notes") if isinstance(doc.get("notes"), str) else ""
    return Prices(region=region, hours_per_month=float(hours), file=name, data=regions[region], notes=notes or "")


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def _entry_problem(entry: Any, fields: tuple[str, ...]) -> str | None:
    if not isinstance(entry, dict):
        return "is missing or not an object"
    for f in fields:
        if not _num(entry.get(f)):
            return f"{f} is missing or not a positive number (got {entry.get(f)!r})"
    if not isinstance(entry.get("source"), str) or not entry["source"].strip():
        return "has no source (the public page the figure comes from)"
    if not isinstance(entry.get("as_of"), str) or not _DATE.match(entry["as_of"]):
        return "has no as_of date (YYYY-MM-DD)"
    if not isinstance(entry.get("estimated", False), bool):
        return "estimated must be true or false"
    acc = entry.get("accelerator")
    if acc is not None and (not isinstance(acc, str) or not acc.strip() or not _num(entry.get("accelerators"))):
        return "accelerator must be a name (like 'NVIDIA A10G') with accelerators, a positive count"
    return None


def _region_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return " is not an object"
    for section, fields in _SECTIONS.items():
        problem = _entry_problem(data.get(section), fields)
        if problem:
            return f"{section} {problem}"
    for section in _TIERED:
        tiers = data[section].get("tiers")
        if not isinstance(tiers, list) or not tiers or not all(_tier_ok(t) for t in tiers) or tiers[-1][0] is not None:
            return f"{section}.tiers must be [[requests or null, usd_per_million], ...] ending with null"
    mem = data["sagemaker_serverless_limits"].get("memory_mb")
    if not isinstance(mem, list) or not mem or not all(_num(m) for m in mem):
        return "sagemaker_serverless_limits.memory_mb must be a list of sizes in MB"
    optional = {k: v for k, v in _OPTIONAL_INSTANCE_SECTIONS.items() if k in data}
    for section, fields in {**_INSTANCE_SECTIONS, **optional}.items():
        sec = data.get(section)
        if not isinstance(sec, dict) or not sec:
            return f"{section} must map instance types to prices"
        for name, entry in sec.items():
            if not _TYPE[section].match(name):
                example = "c7i.2xlarge" if section == "ec2_on_demand" else "ml.c7i.2xlarge"
                return f"{section}.{name}: not an instance type name (like {example})"
            problem = _entry_problem(entry, fields)
            if problem:
                return f"{section}.{name} {problem}"
    return None


def _tier_ok(t: Any) -> bool:
    return isinstance(t, list) and len(t) == 2 and (t[0] is None or _num(t[0])) and _num(t[1])


def tiered_cost(requests: float, tiers: list[list[Any]]) -> float:
    """USD for ``requests`` in a month under per-million tiers ``[[tier size or None, usd per million], ...]``."""
    left, cost = requests, 0.0
    for size, usd_per_million in tiers:
        n = left if size is None else min(left, float(size))
        cost += n / 1e6 * float(usd_per_million)
        left -= n
        if left <= 0:
            break
    return cost
