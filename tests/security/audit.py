"""Audit the installed dependencies for known vulnerabilities: ``make audit``, or ``python -m tests.security.audit``.

What is audited: every distribution that ``resnet-serving[serve,operator,dev,infra,openvino]`` needs, transitively, at
the version installed in the running environment (what ``make venv`` installed; this project itself is left
out: it is not on the registry).

Where the advisories come from: the package registry's JSON API, the only vulnerability source reachable
from these machines and from CI (the OSV service is not). pip-audit asks the registry's per-release endpoint;
here that endpoint answers 404 for every package, and pip-audit then skips each one as "not found" and exits
0, a pass that audited nothing. So this module asks the per-project endpoint, whose ``vulnerabilities`` are
those of the latest release (records of the Python advisory database, with their aliases and fixes):

* a dependency installed at its latest release is audited exactly;
* one behind its latest release cannot be: an advisory fixed after the installed version does not show.
  It is reported as *not audited* and fails the audit, unless the allow-list accepts the gap. Advisories of
  the latest release are still reported for it (they reach back to it unless introduced after it);
* a registry that cannot be reached, or answers an error, fails the audit and says so: nothing unaudited
  passes.

The allow-list (:data:`ALLOWLIST`) accepts a vulnerability (``[[vulnerability]]``: ``id``, ``package``) or a
gap (``[[not_audited]]``: ``package``, a name pattern such as ``nvidia-*``); every entry has a ``reason`` and
a ``review_by`` date, and an entry past its date fails the audit until someone reviews it.

Exit codes: 0 nothing open; 1 a vulnerability, a gap not accepted, an expired entry, or no source; 2 a bad
allow-list or flag.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import fnmatch
import importlib.metadata as metadata
import json
import platform
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dev environment is Python 3.11+
    import tomli as tomllib

ROOT = "resnet-serving"
EXTRAS = ("serve", "operator", "dev", "infra", "openvino")
ALLOWLIST = Path(__file__).with_name("audit-allowlist.toml")
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
REGISTRY_JSON = "https://pypi.org/pypi"
TIMEOUT_S = 20.0
ATTEMPTS = 3
THREADS = 8
SUPPORTED_TAGS = frozenset(sys_tags())


class AllowlistError(ValueError):
    """The allow-list file is malformed (exit 2)."""


class InspectError(ValueError):
    """The ``--inspect`` file is not what ``pip inspect`` writes (exit 2)."""


@dataclass(frozen=True, order=True)
class Dependency:
    name: str
    version: str
    required_as: tuple[tuple[str, str], ...] = ()
    """(requirer, specifier) of every installed requirement on it, to tell why it is not the latest."""


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    fixed_in: tuple[str, ...]
    link: str = ""

    @property
    def names(self) -> frozenset[str]:
        return frozenset((self.id, *self.aliases))


@dataclass(frozen=True)
class Record:
    """What the registry says of one project: its latest release and that release's advisories."""

    latest: str | None
    advisories: tuple[Advisory, ...] = ()
    error: str | None = None
    latest_requires_python: str | None = None
    latest_files: tuple[str, ...] = ()
    answered: bool = True
    """Whether the registry answered at all (an HTTP status), as opposed to no connection or a time-out."""
    """Why the registry could not be asked (the dependency is then not audited)."""


@dataclass(frozen=True)
class Entry:
    kind: str  # vulnerability | not_audited
    package: str
    reason: str
    review_by: dt.date
    id: str | None = None

    def matches_package(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.package)

    def describe(self) -> str:
        what = f"{self.id} in {self.package}" if self.id else f"not audited: {self.package}"
        return f"[[{self.kind}]] {what}"


@dataclass
class Report:
    dependencies: int = 0
    audited_exactly: int = 0
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)
    not_audited: list[dict[str, Any]] = field(default_factory=list)
    gaps_accepted: list[dict[str, Any]] = field(default_factory=list)
    #: behind because another package (not this project) or this Python holds them back: listed, not failing
    held: list[dict[str, Any]] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    unreachable: str | None = None

    @property
    def failed(self) -> bool:
        return bool(self.vulnerabilities or self.not_audited or self.expired or self.unreachable)


# ---- what is installed --------------------------------------------------------------------------------
def declared(pyproject: Path = PYPROJECT, extras: Iterable[str] = EXTRAS) -> list[Requirement]:
    """This project's requirements with ``extras``, from pyproject.toml (the installed metadata may be older)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    texts = list(project.get("dependencies", []))
    for extra in extras:
        texts += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(t) for t in texts]


@dataclass(frozen=True)
class Installed:
    """One installed distribution: what :func:`dependencies` reads of it."""

    version: str
    requires: tuple[str, ...] = ()


def installed_here() -> dict[str, Installed]:
    """The distributions of the running environment."""
    return {
        canonicalize_name(d.metadata["Name"]): Installed(d.version, tuple(d.requires or ()))
        for d in metadata.distributions()
    }


def installed_from_inspect(path: Path) -> dict[str, Installed]:
    """The distributions of another environment (an image's), from the JSON of ``pip inspect`` run there."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        found = {
            canonicalize_name(item["metadata"]["name"]): Installed(
                str(item["metadata"]["version"]), tuple(item["metadata"].get("requires_dist") or ())
            )
            for item in payload["installed"]
        }
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InspectError(f"{path}: not the JSON of `pip inspect` ({type(e).__name__}: {e})") from e
    if not found:
        raise InspectError(f"{path}: `pip inspect` lists no installed distribution")
    return found


def dependencies(
    requirements: Iterable[Requirement] | None = None, installed: Mapping[str, Installed] | None = None
) -> list[Dependency]:
    """The installed distributions (default: this environment's) that ``requirements`` (default:
    :func:`declared`) need, transitively, with markers evaluated here. A requirement that is not installed has
    version ``""``."""
    installed = installed_here() if installed is None else installed
    wanted: dict[str, set[str]] = {}
    required_as: dict[str, set[tuple[str, str]]] = {}
    stack: list[tuple[str, Requirement]] = [(ROOT, r) for r in (declared() if requirements is None else requirements)]
    while stack:
        requirer, req = stack.pop()
        extras = wanted.get(requirer) or {""}
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        key = canonicalize_name(req.name)
        required_as.setdefault(key, set()).add((requirer, str(req.specifier)))
        known = wanted.get(key)
        if known is not None and set(req.extras) <= known:
            continue
        wanted[key] = (known or set()) | set(req.extras)
        dist = installed.get(key)
        for text in dist.requires if dist is not None else ():
            stack.append((key, Requirement(text)))
    wanted.pop(canonicalize_name(ROOT), None)
    return sorted(
        Dependency(k, installed[k].version if k in installed else "", tuple(sorted(required_as.get(k, ()))))
        for k in wanted
    )


# ---- what the registry says ---------------------------------------------------------------------------
def parse_record(payload: Mapping[str, Any]) -> Record:
    advisories = []
    for v in payload.get("vulnerabilities") or []:
        if v.get("withdrawn"):
            continue
        advisories.append(
            Advisory(
                id=str(v.get("id")),
                aliases=tuple(str(a) for a in v.get("aliases") or ()),
                summary=str(v.get("summary") or v.get("details") or "")[:200],
                fixed_in=tuple(str(f) for f in v.get("fixed_in") or ()),
                link=str(v.get("link") or ""),
            )
        )
    latest = str(payload["info"]["version"])
    pythons = {f.get("requires_python") for f in (payload.get("releases") or {}).get(latest, [])}
    requires = payload["info"].get("requires_python") or next((p for p in pythons if p), None)
    files = tuple(str(f.get("filename")) for f in (payload.get("releases") or {}).get(latest, []))
    return Record(latest, tuple(advisories), latest_requires_python=requires or None, latest_files=files)


def fetch_record(name: str, base: str = REGISTRY_JSON, timeout: float = TIMEOUT_S) -> Record:
    url = f"{base.rstrip('/')}/{name}/json"
    problem, answered = "", False
    for _ in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return parse_record(json.load(response))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return Record(latest=None, error=f"{name} is not on the registry (404)")
            problem, answered = f"HTTP {e.code}", True
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            problem = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        except (ValueError, KeyError) as e:
            problem, answered = f"unreadable answer: {e}", True
    return Record(latest=None, error=f"{url}: {problem}", answered=answered)


def fetch_records(deps: Sequence[Dependency], base: str = REGISTRY_JSON) -> dict[str, Record]:
    """One record per dependency. The first is asked alone: when nothing answers it, the others are not asked
    (a network that drops packets would otherwise cost every request its time-out)."""
    if not deps:
        return {}
    first = fetch_record(deps[0].name, base)
    if not first.answered:
        return {d.name: first for d in deps}
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        rest = list(pool.map(lambda d: fetch_record(d.name, base), deps[1:]))
    return dict(zip([d.name for d in deps], [first, *rest], strict=True))


# ---- the allow-list -----------------------------------------------------------------------------------
def load_allowlist(path: Path) -> list[Entry]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise AllowlistError(f"{path}: {e}") from e
    unknown = set(data) - {"vulnerability", "not_audited"}
    if unknown:
        raise AllowlistError(f"{path}: unknown table(s) {sorted(unknown)}; use [[vulnerability]] or [[not_audited]]")
    entries = []
    for kind in ("vulnerability", "not_audited"):
        required = {"package", "reason", "review_by"} | ({"id"} if kind == "vulnerability" else set())
        for i, raw in enumerate(data.get(kind, []), start=1):
            where = f"{path}: [[{kind}]] #{i}"
            missing = sorted(k for k in required if not raw.get(k))
            extra = sorted(set(raw) - required)
            if missing or extra:
                raise AllowlistError(
                    f"{where}: missing {missing} / unknown {extra}; each entry needs {sorted(required)}"
                )
            if not isinstance(raw["review_by"], dt.date) or isinstance(raw["review_by"], dt.datetime):
                raise AllowlistError(f"{where}: review_by must be a date (review_by = 2027-01-31)")
            entries.append(
                Entry(kind, canonicalize_name(str(raw["package"])), str(raw["reason"]).strip(), raw["review_by"],
                      id=str(raw["id"]) if kind == "vulnerability" else None)
            )  # fmt: skip
    return entries


# ---- the decision -------------------------------------------------------------------------------------
def _behind(installed: str, latest: str) -> bool:
    try:
        return Version(installed) != Version(latest)
    except InvalidVersion:
        return installed != latest


def _installable(filename: str) -> bool:
    """A source distribution, or a wheel whose tags this interpreter accepts."""
    if not filename.endswith(".whl"):
        return filename.endswith((".tar.gz", ".zip"))
    try:
        tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return not SUPPORTED_TAGS.isdisjoint(tags)


def held_back(dep: Dependency, record: Record, python: str = platform.python_version()) -> str:
    """Why ``dep`` is not at its latest release: this Python, a requirement that excludes it, or neither."""
    assert record.latest is not None
    if record.latest_requires_python and python not in SpecifierSet(record.latest_requires_python):
        return f"{record.latest} needs Python {record.latest_requires_python}"
    if record.latest_files and not any(_installable(f) for f in record.latest_files):
        return f"{record.latest} has no wheel for this Python and platform"
    try:
        latest = Version(record.latest)
    except InvalidVersion:
        return "the latest release has a version this tool cannot compare"
    for requirer, spec in dep.required_as:
        if spec and latest not in SpecifierSet(spec, prereleases=True):
            return f"held at {spec} by {requirer}"
    return "an upgrade is available"


def _held_by_others(cause: str) -> bool:
    """No upgrade exists for this environment: a third party's requirement or this Python excludes the latest.
    Failing on these would make the gate's result depend on the day's upstream releases, not on this project."""
    if cause.startswith("held at "):
        return not cause.endswith(f" by {ROOT}")
    return " needs Python " in cause or cause.endswith(" has no wheel for this Python and platform")


def evaluate(
    deps: Sequence[Dependency], records: Mapping[str, Record], entries: Sequence[Entry], today: dt.date
) -> Report:
    """Pure: the report for these dependencies, the registry's records of them and the allow-list."""
    report = Report(dependencies=len(deps))
    used: set[Entry] = set()
    errors = [records[d.name].error for d in deps if records[d.name].error and records[d.name].latest is None]
    if deps and len(errors) == len(deps):
        report.unreachable = f"no vulnerability source answered for any of {len(deps)} dependencies: {errors[0]}"
    for dep in deps:
        record = records[dep.name]
        row = {"package": dep.name, "version": dep.version, "latest": record.latest}
        if not dep.version:
            wanted_by = ", ".join(f"{r} {spec}".strip() for r, spec in dep.required_as)
            report.not_audited.append({**row, "why": f"required ({wanted_by}) but not installed: run `make venv`"})
            continue
        if record.latest is None:
            report.not_audited.append({**row, "why": record.error})
            continue
        for adv in record.advisories:
            if dep.version in adv.fixed_in:
                continue
            finding = {**row, "id": adv.id, "aliases": list(adv.aliases), "fixed_in": list(adv.fixed_in),
                       "summary": adv.summary, "link": adv.link}  # fmt: skip
            entry = next((e for e in entries if e.kind == "vulnerability" and e.matches_package(dep.name)
                          and e.id in adv.names), None)  # fmt: skip
            if entry is None:
                report.vulnerabilities.append(finding)
            else:
                used.add(entry)
                report.accepted.append({**finding, "reason": entry.reason, "review_by": entry.review_by.isoformat()})
        if not _behind(dep.version, record.latest):
            report.audited_exactly += 1
            continue
        cause = held_back(dep, record)
        why = f"behind {record.latest} ({cause}): an advisory fixed after {dep.version} would not show"
        gap = next((e for e in entries if e.kind == "not_audited" and e.matches_package(dep.name)), None)
        if gap is None and _held_by_others(cause):
            report.held.append({**row, "why": why})
        elif gap is None:
            report.not_audited.append({**row, "why": why})
        else:
            used.add(gap)
            report.gaps_accepted.append(
                {**row, "why": why, "reason": gap.reason, "review_by": gap.review_by.isoformat()}
            )
    for entry in entries:
        if entry.review_by < today:
            report.expired.append(
                f"{entry.describe()}: its review date {entry.review_by.isoformat()} has passed; check it again and "
                f"set a new review_by, or remove it (reason given: {entry.reason})"
            )
        elif entry not in used and not report.unreachable:
            report.unused.append(f"{entry.describe()} matches nothing installed: remove it")
    return report


# ---- output -------------------------------------------------------------------------------------------
def render(report: Report, allowlist: Path, extras: Sequence[str] = EXTRAS, everything: bool = False) -> str:
    """The report as text. An allow-list entry that matches nothing is noted only for the whole project
    (``extras`` = all of them): an image installs a part of it, and the entry may be there for another part."""
    lines = []
    if report.unreachable:
        return f"AUDIT NOT DONE: {report.unreachable}\naudit: FAILED (nothing was audited)"
    behind = len(report.gaps_accepted) + len(report.held) + sum(1 for r in report.not_audited if r["latest"])
    lines.append(
        f"{report.dependencies} {'distributions installed with' if everything else 'dependencies of'} "
        f"{ROOT}[{','.join(extras)}]: {report.audited_exactly} audited at "
        f"their latest release, {behind} behind it, {sum(1 for r in report.not_audited if not r['latest'])} "
        f"without an answer from the registry"
    )
    lines.append(f"vulnerabilities: {len(report.vulnerabilities)} open, {len(report.accepted)} accepted")
    for v in report.vulnerabilities:
        fixed = ", ".join(v["fixed_in"]) or "no fix yet"
        lines.append(f"  OPEN {v['package']} {v['version']}: {v['id']} {' '.join(v['aliases'])} (fixed in {fixed}) "
                     f"{v['summary']} {v['link']}")  # fmt: skip
    for v in report.accepted:
        lines.append(f"  accepted until {v['review_by']}: {v['package']} {v['version']} {v['id']}: {v['reason']}")
    for r in report.not_audited:
        lines.append(f"  NOT AUDITED {r['package']} {r['version']}: {r['why']}")
    for r in report.gaps_accepted:
        lines.append(f"  not audited, accepted until {r['review_by']}: {r['package']} {r['version']} "
                     f"(latest {r['latest']}): {r['reason']}")  # fmt: skip
    for r in report.held:
        lines.append(f"  not audited, held back by another requirement or this Python: {r['package']} {r['version']}: "
                     f"{r['why']}")  # fmt: skip
    for message in report.expired:
        lines.append(f"  EXPIRED {message}")
    for message in report.unused if set(extras) >= set(EXTRAS) else ():
        lines.append(f"  note: {message}")
    if report.not_audited and not report.unreachable:
        lines.append(
            f"  a dependency behind its latest release: upgrade it (a fresh `make venv` installs the newest "
            f"allowed), or accept the gap in {allowlist} with a reason and a review date"
        )
    lines.append("audit: FAILED" if report.failed else "audit: passed")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.security.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--allowlist", type=Path, default=ALLOWLIST, help="allow-list file (TOML)")
    parser.add_argument("--registry", default=REGISTRY_JSON, help="base URL of the registry's JSON API")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--inspect",
        type=Path,
        help="audit another environment (an image's) from the JSON of `pip inspect` run there, not this one",
    )
    parser.add_argument(
        "--extras",
        default=",".join(EXTRAS),
        help=f"the extras of {ROOT} that environment installs, comma-separated (default {','.join(EXTRAS)})",
    )
    parser.add_argument(
        "--all-installed",
        action="store_true",
        help="audit every distribution installed there, not only what the project needs (an image's whole environment)",
    )
    args = parser.parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    known = set(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"].get("optional-dependencies", {}))
    if set(extras) - known:
        print(f"audit: --extras: unknown extra(s) {', '.join(sorted(set(extras) - known))}; "
              f"{ROOT} has {', '.join(sorted(known))}", file=sys.stderr)  # fmt: skip
        return 2
    try:
        entries = load_allowlist(args.allowlist)
        installed = installed_from_inspect(args.inspect) if args.inspect else None
    except AllowlistError as e:
        print(f"audit: bad allow-list: {e}", file=sys.stderr)
        return 2
    except InspectError as e:
        print(f"audit: --inspect: {e}", file=sys.stderr)
        return 2
    deps = dependencies(declared(extras=extras), installed)
    if args.all_installed:
        source = installed_here() if installed is None else installed
        have = {d.name for d in deps} | {canonicalize_name(ROOT)}
        deps = sorted(deps + [Dependency(k, v.version) for k, v in source.items() if k not in have])
    if not deps:
        where = args.inspect or sys.prefix
        print(f"audit: {ROOT} is not installed in {where}: nothing to audit", file=sys.stderr)
        return 1
    records = fetch_records(deps, args.registry)
    report = evaluate(deps, records, entries, dt.date.today())
    print(render(report, args.allowlist, extras, args.all_installed))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 1 if report.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
