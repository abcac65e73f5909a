"""`resnet-serving bench` subcommand."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from resnet_serving.bench import DEFAULT_CONCURRENCY
from resnet_serving.signals import on_stop_signals
from resnet_serving.torchserve.config import checked_max_batch_delay
from resnet_serving.torchserve.guard import DEFAULT_RETRY_AFTER_S, checked_retry_after


def _int_list(value: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from e
    if not out or any(x < 1 for x in out):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark raw model vs in-process pipeline vs served (TorchServe)")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="where bench.json/.md/.png go")
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=list(DEFAULT_CONCURRENCY),
        help=f"e.g. 1,4,16 (default {','.join(map(str, DEFAULT_CONCURRENCY))}: 64 and 256 are overload)",
    )
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per concurrency level")
    p.add_argument("--warmup", type=float, default=4.0, help="seconds of load discarded before measuring")
    p.add_argument("--raw-seconds", type=float, default=5.0, help="seconds per raw batch size")
    p.add_argument("--raw-batch-sizes", type=_int_list, default=[1, 4, 8, 16])
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds per concurrency level, each bracketed by raw runs; median reported",
    )
    p.add_argument(
        "--server-warmup",
        type=float,
        default=20.0,
        help="seconds of load (highest concurrency) before measuring, for the front end's JIT; 0 = none",
    )
    p.add_argument("--payload", type=Path, help="image sent by the load generator (default: examples photo)")
    p.add_argument("--model-dir", type=Path, help="model.mar + manifest.json (default: build a random one)")
    p.add_argument("--workers", type=int, help="override serve's default")
    p.add_argument("--threads", type=int, help="override serve's default (torch threads per worker)")
    p.add_argument("--batch-size", type=int, help="override serve's default")
    p.add_argument("--max-batch-delay-ms", type=int, help="override serve's default")
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also measure TorchServe's stock image_classifier handler with its default settings, same weights",
    )
    p.add_argument(
        "--retry-after",
        type=int,
        default=DEFAULT_RETRY_AFTER_S,
        metavar="SECONDS",
        help=f"the guard in front of TorchServe, as serve runs it (default {DEFAULT_RETRY_AFTER_S}); "
        "0: measure TorchServe's port",
    )
    p.add_argument("--quick", action="store_true", help="a bounded smoke run (seconds): c=1,4, short windows")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from resnet_serving import ui
    from resnet_serving.bench.report import ratio_lines
    from resnet_serving.bench.runner import DEFAULT_PAYLOAD, BenchOptions, run_bench

    opts = BenchOptions(
        out=args.out,
        concurrency=args.concurrency,
        duration_s=args.duration,
        warmup_s=args.warmup,
        raw_seconds_per_batch=args.raw_seconds,
        raw_batch_sizes=args.raw_batch_sizes,
        repeat=max(1, args.repeat),
        server_warmup_s=max(0.0, args.server_warmup),
        payload=args.payload or DEFAULT_PAYLOAD,
        model_dir=args.model_dir,
        workers=args.workers,
        threads=args.threads,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
        baseline=args.baseline,
        retry_after=checked_retry_after(args.retry_after),
    )
    if args.max_batch_delay_ms is not None:
        checked_max_batch_delay(args.max_batch_delay_ms)
    if args.quick:
        opts.concurrency = [1, 4]
        opts.duration_s, opts.warmup_s, opts.raw_seconds_per_batch = 2.0, 1.0, 0.5
        opts.raw_batch_sizes = [1, 4]
        opts.repeat = min(opts.repeat, 2)
        opts.server_warmup_s = min(opts.server_warmup_s, 1.0)

    def _terminate(_signum: int) -> None:
        raise KeyboardInterrupt  # unwinds through run_bench's finally blocks: TorchServe and the pool stop

    with on_stop_signals(_terminate, (signal.SIGTERM,)):
        report = run_bench(opts)
    ui.info(f"wrote {args.out / 'bench.json'}, bench.md and bench.png")
    for line in ratio_lines(report):
        print(line)
    return 0
