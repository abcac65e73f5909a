"""Every command a page shows is run by a test, or says why not.

A fenced shell block on README.md or a docs/ page is preceded either by ``<!-- NAME:begin -->`` (and followed by
``<!-- NAME:end -->``), where NAME is a block that the test named in ``RUN_BY`` reads from the page and runs or
checks, or by ``<!-- not-run: REASON -->``, where REASON says why no test can run it and what covers it instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.docs_pages import REPO, pages, text

SHELL = {"bash", "sh", "shell", "console", "zsh"}
#: Each marked block and the test that reads it from the page.
RUN_BY = {
    "quickstart": "tests/smoke/test_readme.py",
    "example": "tests/smoke/test_readme.py",
    "curl": "tests/smoke/test_readme.py",
    "evaluate": "tests/smoke/test_evaluate.py",
    "evaluate-pil": "tests/smoke/test_evaluate.py",
    "evaluate-scaled": "tests/smoke/test_evaluate.py",
    "plan": "tests/smoke/test_plan_readme.py",
    "plan-output": "tests/smoke/test_plan_readme.py",
    "install-aws": "tests/infra/test_policy_checks.py",
    "capacity-file": "tests/unit/test_capacity_agrees.py",
    "archive-openvino": "tests/integration/test_openvino_serving.py",
    "batch-job": "tests/chart/test_batch_job.py",
    "batch-status": "tests/integration/test_batch_status.py",
    "plan-batch": "tests/unit/test_plan_batch.py",
}
#: An untagged block that starts with one of these is a command block too, and must be tagged.
COMMANDS = ("make ", "resnet-serving ", "curl ", "kubectl ", "helm ", "aws ", "eksctl ", "python ", "pip ", ".venv/")
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARK = re.compile(r"<!-- ([a-z0-9-]+):begin -->")
NOT_RUN = re.compile(r"<!-- not-run: (.+?) -->")


def blocks(page: Path) -> list[tuple[int, str, str, str]]:
    """(line, language, body, the last non-blank line before the fence) of each fenced block on the page."""
    body = text(page)
    found = []
    for m in FENCE.finditer(body):
        before = [line for line in body[: m.start()].splitlines() if line.strip()]
        found.append((body.count("\n", 0, m.start()) + 1, m.group(1), m.group(2), before[-1] if before else ""))
    return found


def shell_blocks() -> list[tuple[str, int, str, str]]:
    return [
        (str(page.relative_to(REPO)), line, body, before)
        for page in pages()
        for line, lang, body, before in blocks(page)
        if lang in SHELL
    ]


def test_pages_have_shell_blocks() -> None:
    assert len(shell_blocks()) > 10


@pytest.mark.parametrize(("page", "line", "body", "before"), shell_blocks(), ids=lambda x: str(x)[:40])
def test_every_shell_block_is_run_by_a_test_or_says_why_not(page: str, line: int, body: str, before: str) -> None:
    marked, reason = MARK.fullmatch(before.strip()), NOT_RUN.fullmatch(before.strip())
    assert marked or reason, f"{page}:{line}: mark the block for the test that runs it, or say why none does"
    if marked:
        assert marked.group(1) in RUN_BY, f"{page}:{line}: no test is known to run the {marked.group(1)} block"
    else:
        assert len(reason.group(1)) >= 30, f"{page}:{line}: say why no test runs it, and what covers it instead"


def test_every_marked_block_is_read_by_its_test() -> None:
    shown = {m.group(1) for page in pages() for m in MARK.finditer(text(page))}
    assert shown == set(RUN_BY), "RUN_BY and the pages' markers disagree"
    for name, test in RUN_BY.items():
        source = (REPO / test).read_text(encoding="utf-8")
        assert re.search(rf"[\"']{re.escape(name)}[\"']|<!-- {re.escape(name)}:begin -->", source), (name, test)
        assert all(f"<!-- {name}:end -->" in text(p) for p in pages() if f"<!-- {name}:begin -->" in text(p)), name


def commands_only(body: str) -> bool:
    lines = [line.strip().removeprefix("$ ") for line in body.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith((*COMMANDS, "#")) for line in lines)


def test_no_command_hides_in_an_untagged_block() -> None:
    """An untagged block of commands escapes the check above: tag it (bash, or text for a diagram)."""
    untagged = [
        f"{page.relative_to(REPO)}:{line}"
        for page in pages()
        for line, lang, body, _ in blocks(page)
        if not lang and commands_only(body)
    ]
    assert untagged == []
