"""The dependency audit (tests/security/audit.py): its decisions on made-up registry records, its allow-list
rules, and one real run against the package registry's JSON API over this environment's dependencies.

The decision tests feed :func:`evaluate` hand-made records (the registry cannot be made to list a known
vulnerability for a package installed here); the live test asks the real registry.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.security import audit
from tests.security.audit import Advisory, AllowlistError, Dependency, Entry, Record, evaluate, load_allowlist

TODAY = dt.date(2026, 12, 1)
LATER = dt.date(2027, 3, 1)
PYSEC = Advisory("PYSEC-2026-1", ("CVE-2026-0001", "GHSA-aaaa-bbbb-cccc"), "a bad thing", ("9.9",))


def test_a_vulnerable_dependency_fails_with_its_advisory() -> None:
    deps = [Dependency("pillow", "12.0"), Dependency("rich", "14.0")]
    records = {"pillow": Record("12.0", (PYSEC,)), "rich": Record("14.0")}
    report = evaluate(deps, records, [], TODAY)
    assert report.failed and report.audited_exactly == 2
    assert [(v["package"], v["id"], v["fixed_in"]) for v in report.vulnerabilities] == [
        ("pillow", "PYSEC-2026-1", ["9.9"])
    ]
    assert "OPEN pillow 12.0: PYSEC-2026-1" in audit.render(report, Path("allow.toml"))


def test_an_allow_listed_advisory_is_accepted_by_id_or_alias_until_its_review_date() -> None:
    deps = [Dependency("pillow", "12.0")]
    records = {"pillow": Record("12.0", (PYSEC,))}
    entry = Entry("vulnerability", "pillow", "not reachable: we never decode EPS", LATER, id="CVE-2026-0001")
    report = evaluate(deps, records, [entry], TODAY)
    assert not report.failed and report.accepted[0]["reason"] == "not reachable: we never decode EPS"
    expired = evaluate(deps, records, [entry], LATER + dt.timedelta(days=1))
    assert expired.failed and "review date 2027-03-01 has passed" in expired.expired[0]
    assert "[[vulnerability]] CVE-2026-0001 in pillow" in expired.expired[0]
    other = Entry("vulnerability", "rich", "wrong package", LATER, id="PYSEC-2026-1")
    assert evaluate(deps, records, [other], TODAY).vulnerabilities, "an entry covers its own package only"


def test_a_dependency_behind_its_latest_release_is_not_audited_unless_accepted() -> None:
    deps = [Dependency("torch", "2.14.1", (("resnet-serving", "==2.14.1"),)), Dependency("nvidia-nccl-cu13", "2.30")]
    records = {"torch": Record("2.15.0"), "nvidia-nccl-cu13": Record("2.32")}
    report = evaluate(deps, records, [], TODAY)
    assert report.failed and report.audited_exactly == 0
    torch = next(r for r in report.not_audited if r["package"] == "torch")
    assert "held at ==2.14.1 by resnet-serving" in torch["why"] and "fixed after 2.14.1 would not show" in torch["why"]
    entries = [
        Entry("not_audited", "torch", "pinned for TorchServe 0.12", LATER),
        Entry("not_audited", "nvidia-*", "held by torch", LATER),
        Entry("not_audited", "scipy", "not installed", LATER),
    ]
    accepted = evaluate(deps, records, entries, TODAY)
    assert not accepted.failed and len(accepted.gaps_accepted) == 2
    assert accepted.unused == ["[[not_audited]] not audited: scipy matches nothing installed: remove it"]


def test_a_dependency_held_back_by_another_requirement_or_this_python_is_listed_but_does_not_fail() -> None:
    """Only a gap this project chose (its own pin) or could close (an upgrade is available) fails the audit."""
    deps = [
        Dependency("jsonschema-rs", "0.60.3", (("schemathesis", "<0.61.0,>=0.60.1"),)),
        Dependency("numpy", "2.4.6"),
        Dependency("rich", "14.0"),
    ]
    records = {
        "jsonschema-rs": Record("0.61.2"),
        "numpy": Record("2.5.5", latest_requires_python=">=3.12"),
        "rich": Record("14.1"),
    }
    report = evaluate(deps, records, [], TODAY)
    assert [r["package"] for r in report.held] == ["jsonschema-rs", "numpy"]
    assert "held at <0.61.0,>=0.60.1 by schemathesis" in report.held[0]["why"]
    assert [r["package"] for r in report.not_audited] == ["rich"] and report.failed
    assert not evaluate(deps[:2], records, [], TODAY).failed
    assert "held back by another requirement or this Python: jsonschema-rs 0.60.3" in audit.render(
        report, Path("allow.toml")
    )


def test_why_a_dependency_is_behind() -> None:
    newer_python = Record("2.5.5", latest_requires_python=">=3.12")
    assert audit.held_back(Dependency("numpy", "2.4.6"), newer_python, python="3.11.9") == "2.5.5 needs Python >=3.12"
    assert audit.held_back(Dependency("numpy", "2.4.6"), newer_python, python="3.12.1") == "an upgrade is available"
    no_wheel = Record("3.1.0", latest_files=("atheris-3.1.0-cp399-cp399-manylinux_2_17_x86_64.whl",))
    why = audit.held_back(Dependency("atheris", "3.0.0"), no_wheel)
    assert why == "3.1.0 has no wheel for this Python and platform"
    sdist = Record("3.1.0", latest_files=(*no_wheel.latest_files, "atheris-3.1.0.tar.gz"))
    assert audit.held_back(Dependency("atheris", "3.0.0"), sdist) == "an upgrade is available"


def test_an_unreachable_registry_fails_and_says_nothing_was_audited() -> None:
    deps = [Dependency("rich", "14.0"), Dependency("pillow", "12.0")]
    down = Record(None, error="https://registry.invalid/rich/json: URLError: Name or service not known")
    report = evaluate(deps, {"rich": down, "pillow": down}, [], TODAY)
    assert report.failed and report.unreachable and "no vulnerability source answered" in report.unreachable
    assert audit.render(report, Path("a.toml")).startswith("AUDIT NOT DONE: ")
    partly = evaluate(deps, {"rich": down, "pillow": Record("12.0")}, [], TODAY)
    assert partly.failed and not partly.unreachable and partly.not_audited[0]["package"] == "rich"


def test_a_real_registry_error_is_reported_per_package(tmp_path: Path) -> None:
    """fetch_record against a closed loopback port: a connection error, retried, then reported (no exception)."""
    from tests.helpers import free_port

    base = f"http://127.0.0.1:{free_port()}/pypi"
    record = audit.fetch_record("rich", base=base, timeout=2)
    assert record.latest is None and record.error and "rich/json" in record.error and not record.answered
    deps = [Dependency("rich", "14.0"), Dependency("pillow", "12.0")]
    records = audit.fetch_records(deps, base)
    assert set(records) == {"rich", "pillow"} and all(not r.answered for r in records.values())
    assert evaluate(deps, records, [], TODAY).unreachable


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[vulnerability]]\npackage = "x"\nreason = "r"\nreview_by = 2027-01-01\n', "missing ['id']"),
        ('[[not_audited]]\npackage = "x"\nreview_by = 2027-01-01\n', "missing ['reason']"),
        ('[[not_audited]]\npackage = "x"\nreason = "r"\nreview_by = "soon"\n', "review_by must be a date"),
        ('[[not_audited]]\npackage = "x"\nreason = "r"\nreview_by = 2027-01-01\nowner = "me"\n', "unknown ['owner']"),
        ('[[ignore]]\nid = "x"\n', "unknown table(s) ['ignore']"),
        ("[[not_audited]\n", "Expected"),
    ],
)
def test_a_bad_allowlist_is_refused_with_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "allow.toml"
    path.write_text(text)
    with pytest.raises(AllowlistError, match=r"allow\.toml") as caught:
        load_allowlist(path)
    assert words in str(caught.value)


def test_the_project_allowlist_is_valid_and_no_review_date_has_passed() -> None:
    """Offline too: an expired entry fails `make test` even where the registry cannot be asked."""
    entries = load_allowlist(audit.ALLOWLIST)
    expired = [f"{e.describe()} (review_by {e.review_by})" for e in entries if e.review_by < dt.date.today()]
    assert entries and not expired, f"review these entries of {audit.ALLOWLIST}, then renew or remove them: {expired}"


def test_the_dependency_closure_is_what_make_venv_installs() -> None:
    deps = {d.name: d for d in audit.dependencies()}
    assert {"torch", "torchserve", "kopf", "boto3", "pytest", "aws-cdk-lib"} <= set(deps)
    assert "resnet-serving" not in deps, "this project is not on the registry"
    assert ("resnet-serving", "==2.14.1") in deps["torch"].required_as


def test_audit_of_this_environment_against_the_registry(tmp_path: Path, vulnerability_source: str) -> None:
    """`make audit`'s command, for real: every dependency asked of the registry, the project's allow-list."""
    out = tmp_path / "audit.json"
    done = subprocess.run(
        [sys.executable, "-m", "tests.security.audit", "--json", str(out), "--registry", vulnerability_source],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    report = json.loads(out.read_text())
    if report["unreachable"]:
        pytest.fail(f"the registry could not be asked: {report['unreachable']}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["dependencies"] > 100 and report["audited_exactly"] > report["dependencies"] // 2
    assert report["dependencies"] == report["audited_exactly"] + len(report["gaps_accepted"]) + len(report["held"])
    assert "audit: passed" in done.stdout
    print(done.stdout.splitlines()[0], "|", done.stdout.splitlines()[1])


def _inspect(tmp_path: Path, dists: dict[str, tuple[str, list[str]]]) -> Path:
    """The JSON that `pip inspect` writes, for made-up distributions (name: version, requires_dist)."""
    installed = [{"metadata": {"name": n, "version": v, "requires_dist": r}} for n, (v, r) in dists.items()]
    path = tmp_path / "inspect.json"
    path.write_text(json.dumps({"version": "1", "installed": installed}))
    return path


def _registry(tmp_path: Path, latest: dict[str, str], advisories: dict[str, list[dict[str, object]]]) -> str:
    """A registry JSON API as files (``BASE/NAME/json``), read through urllib's file: scheme."""
    for name, version in latest.items():
        (tmp_path / "registry" / name).mkdir(parents=True)
        payload = {"info": {"version": version}, "releases": {version: []}, "vulnerabilities": advisories.get(name, [])}
        (tmp_path / "registry" / name / "json").write_text(json.dumps(payload))
    return (tmp_path / "registry").as_uri()


def test_inspect_audits_another_environments_closure_with_its_requirements(tmp_path: Path) -> None:
    inspect = _inspect(
        tmp_path,
        {
            "resnet-serving": ("0.1.0", ["rich>=13", "kopf; extra == 'operator'"]),
            "rich": ("14.0", ["pygments>=2"]),
            "Pygments": ("2.19", []),
            "pip": ("23.0.1", []),
        },
    )
    installed = audit.installed_from_inspect(inspect)
    assert installed["pygments"] == audit.Installed("2.19", ())
    deps = audit.dependencies([audit.Requirement("rich>=13")], installed)
    assert [(d.name, d.version) for d in deps] == [("pygments", "2.19"), ("rich", "14.0")]
    assert ("rich", ">=2") in deps[0].required_as


@pytest.mark.parametrize(
    ("text", "words"),
    [("{}", "KeyError"), ("not json", "JSONDecodeError"), ('{"installed": []}', "lists no installed distribution")],
)
def test_a_bad_inspect_file_is_refused_with_what_is_wrong(tmp_path: Path, text: str, words: str) -> None:
    bad = tmp_path / "inspect.json"
    bad.write_text(text)
    with pytest.raises(audit.InspectError, match=words):
        audit.installed_from_inspect(bad)
    assert audit.main(["--inspect", str(bad), "--extras", "serve"]) == 2


def test_an_unknown_extra_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main(["--extras", "serve,gpu"]) == 2
    assert "unknown extra(s) gpu" in capsys.readouterr().err


def test_all_installed_audits_what_the_project_does_not_need_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image's whole environment: pip, which nothing requires, is audited with --all-installed (and found
    vulnerable here), and left out without it. The project's requirements are made up (rich only)."""
    monkeypatch.setattr(audit, "declared", lambda extras: [audit.Requirement("rich>=13")])
    inspect = _inspect(
        tmp_path,
        {"resnet-serving": ("0.1.0", ["rich>=13"]), "rich": ("14.0", []), "pip": ("23.0.1", [])},
    )
    advisory = {"id": "PYSEC-2023-228", "aliases": ["CVE-2023-5752"], "summary": "pip mercurial", "fixed_in": ["23.3"]}
    registry = _registry(tmp_path, {"rich": "14.0", "pip": "23.0.1"}, {"pip": [advisory]})
    empty = tmp_path / "allow.toml"
    empty.write_text("")
    base = ["--inspect", str(inspect), "--registry", registry, "--allowlist", str(empty), "--extras", "serve"]
    out = tmp_path / "report.json"
    assert audit.main([*base, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dependencies"] == 1
    assert audit.main([*base, "--all-installed", "--json", str(out)]) == 1
    report = json.loads(out.read_text())
    assert report["dependencies"] == 2
    assert [(v["package"], v["id"]) for v in report["vulnerabilities"]] == [("pip", "PYSEC-2023-228")]


def test_the_audit_covers_every_extra_make_venv_installs() -> None:
    """What `make venv` installs is what `make audit` and this suite audit: an extra added to one only (the
    openvino extra was) would go unaudited."""
    import re

    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    (extras,) = re.findall(r"pip install --quiet -e '\.\[([a-z,]+)\]'", makefile)
    assert tuple(extras.split(",")) == audit.EXTRAS
