"""docs/measurements/2026-12-07-plan-totals.md runs the brief's scenario (10,000 users, one request per 10 s, p99 <=
500 ms) through the plan for the shipped region and node type: what the command prints must be exactly the output
the page shows, so the totals it quotes cannot rot. Regenerate the block from the tool, never by hand."""

from __future__ import annotations

import re
import shlex

from resnet_serving.cli import main
from tests.helpers import REPO

PAGE = REPO / "docs" / "measurements" / "2026-12-07-plan-totals.md"
BLOCKS = re.compile(r"```bash\n(resnet-serving plan .*?)```\s*```text\n(.*?)```", re.S)


def command_and_output() -> tuple[str, str]:
    m = BLOCKS.search(PAGE.read_text(encoding="utf-8"))
    assert m, f"{PAGE} has no plan command followed by its output"
    return " ".join(m.group(1).replace("\\\n", " ").split()), m.group(2)


def test_the_totals_page_shows_what_the_plan_prints(capsys, monkeypatch) -> None:
    command, shown = command_and_output()
    assert "--region eu-west-1" in command and "--node-type c7i.2xlarge" in command
    monkeypatch.chdir(REPO)
    assert main(shlex.split(command)[1:]) == 0
    printed = capsys.readouterr().out
    assert [x.rstrip() for x in printed.strip().splitlines()] == [x.rstrip() for x in shown.strip().splitlines()]


def test_the_page_quotes_the_totals_the_plan_prints(capsys, monkeypatch) -> None:
    """Every dollar figure in the page's prose is one the output shows."""
    text = PAGE.read_text(encoding="utf-8")
    _, shown = command_and_output()
    prose = BLOCKS.sub("", text)
    quoted = set(re.findall(r"\$[\d,]+", prose))
    assert quoted, "the page quotes no totals"
    assert quoted <= set(re.findall(r"\$[\d,]+", shown)), quoted - set(re.findall(r"\$[\d,]+", shown))
