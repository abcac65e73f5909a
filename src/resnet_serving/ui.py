"""Status output with rich: live on a TTY, plain quiet lines otherwise (CI, logs, pods).

Progress bars have one owner here (:func:`terminal_progress`): a bar on stderr on a TTY, nothing elsewhere.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

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


class ProgressFactory(Protocol):
    """``with factory(description, total) as advance: advance(n)`` for every ``n`` units of work done."""

    def __call__(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


@contextmanager
def no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@contextmanager
def _bar(description: str, total: int, *, unit: str) -> Iterator[Callable[[int], None]]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    counts: tuple[ProgressColumn, ...] = (
        (DownloadColumn(binary_units=True), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.update(task, advance=n)


@contextmanager
def _byte_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    with _bar(description, total, unit="bytes") as advance:
        yield advance


@contextmanager
def _item_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    with _bar(description, total, unit="items") as advance:
        yield advance


def terminal_progress(enabled: bool | None = None, *, unit: str = "bytes") -> ProgressFactory:
    """The one progress behaviour of the package: a rich bar on stderr while stderr is a terminal (or
    ``enabled=True``), left on screen when done; :func:`no_progress` otherwise (CI, logs, pipes, pods), so
    stdout stays the command's result. ``unit``: "bytes" (store transfers) or "items" (counted work)."""
    if enabled is None:
        enabled = interactive()
    if not enabled:
        return no_progress
    return _byte_bar if unit == "bytes" else _item_bar


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``with progress("images", n) as advance: advance(k)``: counted work, shown as :func:`terminal_progress`
    shows it."""
    with terminal_progress(unit="items")(description, total) as advance:
        yield advance


def info(message: str) -> None:
    console.print(message, highlight=False)


def warn(message: str) -> None:
    console.print(f"[bold yellow]WARNING[/]: {message}", highlight=False)


def predictions_table(title: str) -> Table:
    """The table `predict` and `sagemaker invoke` print: one row per prediction, the image named once."""
    table = Table(title=title)
    for col in ("image", "#", "label", "index", "score"):
        table.add_column(col, justify="right" if col in ("#", "index", "score") else "left")
    return table


def add_predictions(table: Table, image: str, body: Mapping[str, Any]) -> str:
    """Add one response's predictions to ``table``; returns the caption line (version, weights, warning)."""
    for rank, pred in enumerate(body.get("predictions", []), 1):
        table.add_row(image if rank == 1 else "", str(rank), pred["label"], str(pred["index"]), f"{pred['score']:.4f}")
    caption = f"version {body.get('version')}, weights {body.get('weights')}"
    if body.get("warning"):
        caption += f" — [yellow]{body['warning']}[/]"
    return caption
