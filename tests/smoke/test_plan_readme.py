"""The README's "Capacity and cost" command, run as written from the repository root against the checked-in
smoke bench: what it prints must be exactly the output the README shows, so the section's numbers cannot rot."""

from __future__ import annotations

import re
import shlex

import pytest

from resnet_serving.cli import main
from tests.helpers import REPO

pytestmark = pytest.mark.smoke
README = REPO / "README.md"


def _section(name: str, lang: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {name}:begin -->\s*```{lang}\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)


def test_readme_plan_command_prints_the_readme_output(capsys, monkeypatch) -> None:
    lines = [" ".join(x.split()) for x in _section("plan", "bash").replace("\\\n", " ").splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("resnet-serving plan ")
    monkeypatch.chdir(REPO)
    assert main(shlex.split(lines[0])[1:]) == 0
    printed = capsys.readouterr().out
    assert [x.rstrip() for x in printed.strip().splitlines()] == [
        x.rstrip() for x in _section("plan-output", "text").strip().splitlines()
    ]
