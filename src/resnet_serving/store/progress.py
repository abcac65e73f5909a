"""Transfer progress: a rich progress bar on a terminal, silence everywhere else (logs, pipes, pods)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class ProgressFactory(Protocol):
    """``with factory(description, total_bytes) as advance: advance(n)`` for every ``n`` bytes moved."""

    def __call__(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


@contextmanager
def no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@contextmanager
def _rich_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(file=sys.stdout)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)


def terminal_progress(enabled: bool | None = None) -> ProgressFactory:
    """A rich progress bar when stdout is a terminal (or ``enabled=True``); :func:`no_progress` otherwise."""
    if enabled is None:
        enabled = sys.stdout.isatty()
    return _rich_bar if enabled else no_progress
