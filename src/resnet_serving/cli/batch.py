"""``batch run``: classify the images under an S3 prefix (or a manifest of keys) into JSON Lines, by shard.

Thin adapter over :mod:`resnet_serving.batch`; torch is imported only when a run starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from resnet_serving import MODEL_NAME
from resnet_serving.cli.flags import add_endpoint_url
from resnet_serving.settings import ENV_CHANNEL, ENV_STORE, ENV_VERSION, environment


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    top = subparsers.add_parser(
        "batch",
        help="classify the images under an S3 prefix or in a manifest, offline, into JSON Lines by shard",
        description="Offline batch inference without HTTP: one process classifies one shard of the input.",
    )
    sub = top.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "run",
        help="classify one shard of the input; resumable, one result line per input",
        description="Classify every image of one shard of --input with a store version, writing JSON Lines part "
        "files, a checkpoint after each, and a summary.json under --output/shard-IIIII-of-NNNNN/. A shard "
        "with a summary is skipped; a killed shard resumes from its checkpoint. A bad image is a result line "
        "with an error; an unreadable input, output or model fails before any work.",
    )
    p.add_argument("--input", required=True, help="s3://BUCKET/PREFIX/ or file:///DIR/ holding the images")
    p.add_argument(
        "--manifest",
        type=Path,
        help="a file listing the keys to classify, one a line, relative to --input (default: every object there)",
    )
    p.add_argument("--output", required=True, help="s3://BUCKET/PREFIX/ or file:///DIR/ for the results")
    p.add_argument(
        "--store",
        default=environment().get(ENV_STORE) or None,
        help=f"the model store: s3://BUCKET/PREFIX or file:///DIR (default: ${ENV_STORE})",
    )
    p.add_argument("--model", default=MODEL_NAME, help=f"model name (default: {MODEL_NAME})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", help=f"the store version to run (default: ${ENV_VERSION})")
    which.add_argument("--channel", help=f"run the version this channel points at (default: ${ENV_CHANNEL})")
    p.add_argument("--shard", help="INDEX/COUNT, 0-based (default: $JOB_COMPLETION_INDEX with --shards, else 0/1)")
    p.add_argument("--shards", type=int, help="shard count with $JOB_COMPLETION_INDEX (the Job's completions)")
    p.add_argument("--batch-size", type=int, help="images per forward pass (default: serve's batch size, 8)")
    p.add_argument("--checkpoint-every", type=int, help="images per part file and checkpoint (default: 256)")
    p.add_argument("--readers", type=int, help="concurrent object reads (default: 10, the S3 client's connection pool)")
    add_endpoint_url(p)
    p.set_defaults(func=cmd_run)

    st = sub.add_parser(
        "status",
        help="one table of every shard's state under a batch run's --output",
        description="Read the shards' summary.json and checkpoint.json under --output into one table: finished, "
        "running or stopped (a checkpoint and no summary), or not started. Exit 0 when every shard has finished, "
        "3 while some have not (for a script's wait loop), 2 when no shard is there.",
    )
    st.add_argument("--output", required=True, help="the --output of batch run: s3://BUCKET/PREFIX/ or file:///DIR/")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_endpoint_url(st)
    st.set_defaults(func=cmd_status)


def cmd_run(args: argparse.Namespace) -> int:
    from resnet_serving.batch.run import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_CHECKPOINT_EVERY,
        DEFAULT_READERS,
        BatchOptions,
        run_batch,
    )
    from resnet_serving.batch.shard import resolve_shard
    from resnet_serving.cli.store import fetch_target
    from resnet_serving.errors import InputError

    env = environment()
    if not args.store:
        raise InputError(f"no model store given: pass --store s3://BUCKET/PREFIX or file:///DIR (or set {ENV_STORE})")
    version, channel = fetch_target(args.version, args.channel, env)
    opts = BatchOptions(
        input=args.input,
        output=args.output,
        store=args.store,
        shard=resolve_shard(args.shard, args.shards, env),
        version=version,
        channel=channel,
        manifest=args.manifest,
        model=args.model,
        batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
        checkpoint_every=args.checkpoint_every or DEFAULT_CHECKPOINT_EVERY,
        readers=args.readers or DEFAULT_READERS,
        endpoint_url=args.endpoint_url,
    )
    summary = run_batch(opts)
    shown = {k: summary[k] for k in ("shard", "output", "model_version", "images", "ok", "errors", "images_per_s")}
    shown["skipped"] = summary["skipped"]
    print(json.dumps(shown))
    return 0


#: ``batch status``'s exit code while some shard has not finished: not an error, and not done.
EXIT_INCOMPLETE = 3


def cmd_status(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console
    from rich.table import Table

    from resnet_serving.batch.status import UNREADABLE, batch_status
    from resnet_serving.store.objects import open_location

    status = batch_status(open_location(args.output, args.endpoint_url))
    code = 0 if status.complete else EXIT_INCOMPLETE
    if args.json:
        print(json.dumps(status.to_dict(), indent=2))
        return code
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"batch run output {status.output}", title_justify="left")
    for name in ("SHARD", "STATE", "IMAGES", "OK", "ERRORS", "IMG/S", "SECONDS", "MODEL VERSION"):
        table.add_column(name, justify="left" if name in ("SHARD", "STATE", "MODEL VERSION") else "right")
    for s in status.shards:
        state = f"[red]{s.state}: {s.problem}[/]" if s.state == UNREADABLE else s.state
        table.add_row(
            s.name,
            state,
            str(s.images),
            str(s.ok),
            str(s.errors),
            "" if s.images_per_s is None else f"{s.images_per_s:g}",
            "" if s.duration_s is None else f"{s.duration_s:g}",
            s.model_version or "",
        )
    console.print(table)
    t = status.totals()
    console.print(
        f"{status.finished} of {len(status.shards)} shards finished; {t['images']} images, {t['ok']} ok, "
        f"{t['errors']} errors",
        highlight=False,
    )
    if len(status.counts) > 1:
        console.print(
            f"[yellow]runs with different shard counts ({', '.join(map(str, status.counts))}) share this output: "
            "their shards overlap, so give each run its own --output[/]",
            highlight=False,
        )
    return code
