"""The one place the CLI's long-running commands take over SIGINT and SIGTERM (a pod's stop, Ctrl-C)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def on_stop_signals(handler: Callable[[int], None], signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Call ``handler(signum)`` on each of ``signals`` inside the block; the previous handlers come back after."""

    def _handle(signum: int, _frame: Any) -> None:
        handler(signum)

    old = {s: signal.signal(s, _handle) for s in signals}
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)


@contextmanager
def stop_event_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets: the command winds down and returns, running its cleanups."""
    stop = threading.Event()
    with on_stop_signals(lambda _signum: stop.set()):
        yield stop
