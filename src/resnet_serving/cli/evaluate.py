"""``resnet-serving evaluate``: top-1/top-5 per precision (and JPEG decode, and CPU resize) on a labelled folder,
before reduced precision, the scaled JPEG decode or another resize is served.

A thin adapter over :func:`resnet_serving.bench.accuracy.evaluate_model` (torch is imported inside it only).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from resnet_serving import ui
from resnet_serving.errors import InputError
from resnet_serving.files import atomic_write_bytes
from resnet_serving.settings import CPU_RESIZE_CHOICES, env_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="top-1/top-5 of the served model on a labelled image folder, for fp32 and each reduced precision",
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="one folder per ImageNet synset id (n01440764/…), or images with a labels.csv of file,label",
    )
    p.add_argument("--labels", type=Path, help="a CSV of file,label (file relative to --data); default: folders")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", type=Path, help="model.mar + manifest.json to evaluate (sha256 checked)")
    src.add_argument("--weights", default=None, help="imagenet | random | auto | PATH (default: auto)")
    p.add_argument(
        "--precision",
        action="append",
        choices=("fp32", "bf16", "fp16"),
        help="repeatable; default: fp32 and every reduced precision this CPU or GPU runs natively",
    )
    p.add_argument(
        "--jpeg-decode",
        action="append",
        choices=("exact", "scaled"),
        help=f"repeatable; scaled: also score each precision with {env_name('jpeg_scaled_decode')}=1 (default: exact)",
    )
    p.add_argument(
        "--cpu-resize",
        action="append",
        choices=CPU_RESIZE_CHOICES,
        help=f"repeatable; pil: also score each precision with {env_name('cpu_resize')}=pil, bit-exact with "
        "transforms() on PIL images (default: the served resize only)",
    )
    p.add_argument("--limit", type=int, help="score at most N images (a fixed-seed sample)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch through the service (default 8)")
    p.add_argument("--gpu", action="store_true", help="run on CUDA device 0 (default: the CPU)")
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resnet_serving.bench.accuracy import evaluate_model

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}: must be ≥ 1")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: must be ≥ 1")
    if args.gpu and "scaled" in (args.jpeg_decode or []):
        raise InputError("--jpeg-decode scaled with --gpu: a GPU worker decodes on the GPU, where it does not apply")
    if args.gpu and args.cpu_resize:
        raise InputError("--cpu-resize with --gpu: a GPU worker resizes on the GPU, where it does not apply")
    result = evaluate_model(
        args.data,
        args.labels,
        limit=args.limit,
        gpu=args.gpu,
        precisions=args.precision,
        model_dir=args.model_dir,
        weights=args.weights,
        batch_size=args.batch_size,
        jpeg_decodes=args.jpeg_decode,
        cpu_resizes=args.cpu_resize,
    )
    _print(result)
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        ui.info(f"wrote {args.out}")
    return 0


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['scored']} images, {result['classes']} classes, weights {result['weights']}, "
        f"on {result['device']}"
    )
    for col in ("precision", "graph", "JPEG decode", "resize", "top-1", "top-5", "top-1 agreement with fp32", "img/s"):
        table.add_column(col, justify="left" if col in ("precision", "graph", "JPEG decode", "resize") else "right")
    for name, r in result["precisions"].items():
        table.add_row(
            name,
            r["graph"],
            r["jpeg_decode"],
            r.get("cpu_resize") or "on the GPU",
            _pct(r["top1"]),
            _pct(r["top5"]),
            _pct(r["top1_agreement_with_fp32"]),
            f"{r['img_s']:.1f}",
        )
    Console().print(table)  # the result goes to stdout; progress and warnings to stderr
    for name, r in result["precisions"].items():
        if name != "fp32":
            delta = 100 * (r["top1"] - result["precisions"]["fp32"]["top1"])
            print(
                f"{name}: top-1 {delta:+.2f} points against fp32, "
                f"same top-1 class as fp32 on {_pct(r['top1_agreement_with_fp32'])} of the images"
            )
    if result["unreadable"]:
        names = list(result["unreadable"])
        ui.warn(f"{len(names)} file(s) could not be decoded and were not scored: {', '.join(names[:5])}")
    if "note" in result:
        ui.warn(result["note"])
