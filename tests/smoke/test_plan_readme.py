"""The capacity study's `resnet-serving plan` command (docs/measurements/2026-12-06-capacity-10000-users.md), run
as written from the repository root against the checked-in bench: what it prints must be exactly the output the
page shows, so the page's numbers cannot rot."""

from __future__ import annotations

import shlex

import pytest

from resnet_serving.cli import main
from tests.helpers import REPO
from tests.helpers.docs_pages import marked

pytestmark = pytest.mark.smoke


def _section(name: str, lang: str) -> str:
    return marked(name, lang)


def test_readme_plan_command_prints_the_readme_output(capsys, monkeypatch) -> None:
    lines = [" ".join(x.split()) for x in _section("plan", "bash").replace("\\\n", " ").splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("resnet-serving plan ")
    monkeypatch.chdir(REPO)
    assert main(shlex.split(lines[0])[1:]) == 0
    printed = capsys.readouterr().out
    assert [x.rstrip() for x in printed.strip().splitlines()] == [
        x.rstrip() for x in _section("plan-output", "text").strip().splitlines()
    ]
