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


class CountingBar:
    """A bar for work whose total is learnt while it runs (:func:`counting_progress`): ``set_total`` once known,
    ``start_at`` for work done before (a resumed run), ``advance`` with the current rate."""

    def __init__(self, bar: Any = None, task: Any = None, rate_unit: str = "") -> None:
        self._bar, self._task, self._unit = bar, task, rate_unit

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def start_at(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def advance(self, n: int, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{rate:.1f} {self._unit}")


@contextmanager
def counting_progress(description: str, *, rate_unit: str, enabled: bool | None = None) -> Iterator[CountingBar]:
    """Done of total (unknown at first), the rate and the time left, as :func:`terminal_progress` shows bars:
    on a terminal only, a :class:`CountingBar` that does nothing elsewhere."""
    if not (interactive() if enabled is None else enabled):
        yield CountingBar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        yield CountingBar(bar, bar.add_task(description, total=None, rate="-"), rate_unit)


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
