"""Status output with rich: live on a TTY, plain quiet lines otherwise (CI, logs, pods)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

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


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """``with progress("images", n) as advance: advance(k)``: a rich bar on a TTY; otherwise one plain line per
    tenth of the work, so a log shows that it moves."""
    if interactive():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.update(task, advance=n)
        return
    done, step = 0, max(1, total // 10)
    next_line = step

    def advance(n: int) -> None:
        nonlocal done, next_line
        done += n
        if done >= next_line or done >= total:
            print(f"… {description}: {done}/{total}", file=sys.stderr, flush=True)
            next_line = done + step

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
