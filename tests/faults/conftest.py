"""Fixtures of the fault suite: the table its cases fill (printed, and written under faults-results/ by
`make faults`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import LONG, Row, markdown
from tests.helpers import REPO


@pytest.fixture(scope="session")
def fault_table() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    text = markdown(rows)
    if LONG:
        out = REPO / "faults-results"
        out.mkdir(exist_ok=True)
        (out / "faults.md").write_text(text + "\n", encoding="utf-8")
    print("\n\n" + text)
