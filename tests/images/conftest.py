"""Fixtures of the image tests: the images of this commit, and the containers a test starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.images import FIGURES, build_once, docker


@pytest.fixture(scope="session")
def built() -> None:
    """The images of this commit, built by `make images` (docker/build.sh) if missing or built from another;
    skipped, saying why, without an engine or without the disk room for a build."""
    build_once()


@pytest.fixture
def containers() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        docker("rm", "-f", name, check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("what the image tests measured")
        for line in FIGURES:
            terminalreporter.write_line(line)
