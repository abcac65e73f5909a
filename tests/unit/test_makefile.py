"""`make help` lists every target with one line, and .PHONY names only targets that exist."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.helpers import REPO

MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")
TARGETS = set(re.findall(r"^([a-z][a-z0-9-]*):", MAKEFILE, re.M))


def test_phony_names_only_real_targets() -> None:
    phony = set(re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split())
    assert phony - TARGETS == set(), "phantom .PHONY entries"
    assert TARGETS - phony == set(), "targets that are not files but are missing from .PHONY"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_help_lists_every_target_once() -> None:
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = [line.split()[1] for line in out.splitlines() if line.startswith("  make ")]
    assert sorted(listed) == sorted(TARGETS) and len(listed) == len(set(listed))
    assert all(len(line.split(maxsplit=2)) == 3 for line in out.splitlines()), "a target without its line"
