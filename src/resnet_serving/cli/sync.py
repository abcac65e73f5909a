"""`resnet-serving sync`: follow a store channel and switch a local TorchServe to it. A thin adapter over
:mod:`resnet_serving.sync.follow`; ``serve --store URI --channel C`` runs the same loop in a background thread."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_serving import MODEL_NAME, ui
from resnet_serving.cli.flags import add_endpoint_url
from resnet_serving.ports import INFERENCE_PORT, MANAGEMENT_PORT, loopback_url
from resnet_serving.settings import ENV_CHANNEL, ENV_STORE, environment
from resnet_serving.signals import stop_event_on_signals
from resnet_serving.store import DEFAULT_CHANNEL
from resnet_serving.sync.follow import DEFAULT_INTERVAL, build_syncer, sync_log

if TYPE_CHECKING:
    from resnet_serving.sync.loop import Syncer, SyncStatus


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sync",
        help="follow a store channel: switch a running TorchServe to each promoted version, zero failed requests",
        description=(
            "Poll the store; when the channel moves, fetch and verify the new version, register it in TorchServe, "
            "wait until it answers, make it the default and unregister the old one once drained. A version that "
            "fails to verify or load is not retried until the channel moves again; the old one keeps serving."
        ),
    )
    p.add_argument("--store", default=environment().get(ENV_STORE), help=f"store URI (default ${ENV_STORE})")
    p.add_argument(
        "--channel",
        default=environment().get(ENV_CHANNEL) or DEFAULT_CHANNEL,
        help=f"channel to follow (default ${ENV_CHANNEL}, else {DEFAULT_CHANNEL})",
    )
    p.add_argument(
        "--torchserve",
        metavar="MGMT_URL",
        default=loopback_url(MANAGEMENT_PORT),
        help=f"TorchServe management API, loopback (default {loopback_url(MANAGEMENT_PORT)}); "
        "needs enable_model_api=true",
    )
    p.add_argument(
        "--inference-url",
        default=loopback_url(INFERENCE_PORT),
        help=f"TorchServe inference API, to check that a new version answers (default {loopback_url(INFERENCE_PORT)})",
    )
    p.add_argument(
        "--model-store",
        type=Path,
        required=True,
        metavar="DIR",
        help="TorchServe's model store directory on this machine: new versions are placed there",
    )
    p.add_argument("--once", action="store_true", help="one poll (and switch); exit 0 iff the channel's version serves")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between polls (default 10)")
    p.add_argument("--max-backoff", type=float, default=120.0, help="longest wait between polls after errors")
    p.add_argument("--ready-timeout", type=float, default=180.0, help="seconds for a new version to answer")
    p.add_argument("--model", default=MODEL_NAME, help=argparse.SUPPRESS)
    add_endpoint_url(p)
    p.set_defaults(func=cmd_sync)


@contextmanager
def _display(syncer: Syncer) -> Iterator[None]:
    """A live status table on a TTY (transitions print above it); quiet lines otherwise."""
    if not ui.interactive():
        with sync_log():
            yield
        return
    from rich.live import Live
    from rich.logging import RichHandler

    with (
        sync_log(RichHandler(console=ui.console, show_path=False, markup=False)),
        Live(_table(syncer.status), console=ui.console, refresh_per_second=4, transient=False) as live,
    ):
        syncer.subscribe(lambda status: live.update(_table(status)))
        yield


def _table(status: SyncStatus) -> Any:
    from rich.table import Table

    t = Table(title=f"resnet-serving sync: {status.model} ← channel {status.channel}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    colour = {"in-sync": "green", "switching": "cyan", "holding": "yellow"}.get(status.state.value, "red")
    rows = [
        ("state", f"[{colour}]{status.state.value}[/]"),
        ("serving", f"v{status.current}" if status.current else "nothing"),
        ("channel points at", f"v{status.target}" if status.target else "unset"),
        ("failed", ", ".join(f"v{v}" for v in sorted(status.failed)) or "none"),
        ("last switch", f"{status.last_switch_s:.1f}s" if status.last_switch_s is not None else "none yet"),
        ("switches / polls", f"{status.switches} / {status.polls}"),
        ("status", status.message),
    ]
    if status.last_error:
        rows.append(("last error", f"[red]{status.last_error}[/]"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def cmd_sync(args: argparse.Namespace) -> int:
    syncer = build_syncer(
        store=args.store,
        endpoint_url=args.endpoint_url,
        channel=args.channel,
        management_url=args.torchserve,
        inference_url=args.inference_url,
        model_store=args.model_store,
        interval=args.interval,
        max_backoff=args.max_backoff,
        ready_timeout=args.ready_timeout,
        model=args.model,
    )
    if args.once:
        with sync_log():
            status = syncer.step()
        if status.in_sync:
            print(f"v{status.current} serves, as channel {status.channel} asks")
            return 0
        print(f"resnet-serving sync: not serving channel {status.channel}'s version: {status.line()}", file=sys.stderr)
        return 1

    with stop_event_on_signals() as stop, _display(syncer):
        syncer.run(stop)
    return 0
