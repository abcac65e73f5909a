"""Status output with rich: live on a TTY, plain quiet lines otherwise (CI, logs, pods)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

console = Console(stderr=True)


def interactive() -> bool:
    return console.is_terminal and sys.stderr.isatty()


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on a TTY; one plain line otherwise."""
    if interactive():
        with console.status(message):
            yield
    else:
        print(f"… {message}", file=sys.stderr, flush=True)
        yield


def info(message: str) -> None:
    console.print(message, highlight=False)


def warn(message: str) -> None:
    console.print(f"[bold yellow]WARNING[/]: {message}", highlight=False)
