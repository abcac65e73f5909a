"""The fuzzing fixture: atheris must be importable (the dev extra installs it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz.fuzzing import FuzzResult, run_target


@pytest.fixture
def fuzz_runner(tmp_path: Path) -> Callable[..., FuzzResult]:
    """``fuzz_runner(target, runs, **kw)``: one libFuzzer run in a subprocess, new inputs kept in tmp_path."""
    pytest.importorskip("atheris", reason="atheris is in the dev extra: pip install -e '.[dev]'")

    def run(target: str, runs: int, **kw: Any) -> FuzzResult:
        return run_target(target, runs, tmp_path / f"scratch-{target}", **kw)

    return run
