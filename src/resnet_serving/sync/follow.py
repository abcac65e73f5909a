"""Following a channel, set up: a :class:`~resnet_serving.sync.loop.Syncer` on the real store and TorchServe's
management API (flags checked first), its log lines, and the background thread ``serve --channel`` runs it in."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resnet_serving import MODEL_NAME
from resnet_serving.errors import ConfigError
from resnet_serving.store import POLL_RETRY, open_store, validate_channel
from resnet_serving.sync.loop import Syncer
from resnet_serving.torchserve.management import ManagementClient

DEFAULT_INTERVAL = 10.0


def build_syncer(
    *,
    store: str | None,
    endpoint_url: str | None,
    channel: str,
    management_url: str,
    inference_url: str,
    model_store: Path,
    interval: float = DEFAULT_INTERVAL,
    max_backoff: float = 120.0,
    ready_timeout: float = 180.0,
    model: str = MODEL_NAME,
) -> Syncer:
    """A :class:`resnet_serving.sync.Syncer` on the real store and management API; flags checked first."""
    validate_channel(channel)
    if interval <= 0 or max_backoff < interval:
        raise ConfigError(f"--interval {interval} must be > 0 and --max-backoff {max_backoff} at least as long")
    if not model_store.is_dir():
        raise ConfigError(f"--model-store {model_store}: not a directory (TorchServe's model store on this machine)")
    return Syncer(
        open_store(store, endpoint_url=endpoint_url, retry=POLL_RETRY),
        ManagementClient(management_url),
        channel=channel,
        model_store=model_store.resolve(),
        inference_url=inference_url,
        model=model,
        interval=interval,
        max_backoff=max_backoff,
        ready_timeout=ready_timeout,
    )


@contextmanager
def sync_log(handler: logging.Handler | None = None) -> Iterator[None]:
    """Show the sync loop's transition lines (plain timestamped lines on stderr by default) while inside."""
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s resnet-serving sync: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger("resnet_serving.sync")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def start_in_background(syncer: Syncer, stop: threading.Event) -> threading.Thread:
    """Run the sync loop in a daemon thread until ``stop`` is set (used by `serve --channel`)."""

    def _run() -> None:
        with sync_log():
            syncer.run(stop)

    thread = threading.Thread(target=_run, name="resnet-serving-sync", daemon=True)
    thread.start()
    return thread
