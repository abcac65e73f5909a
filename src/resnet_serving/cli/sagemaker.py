"""``resnet-serving sagemaker deploy|status|rollback|delete|invoke``: thin CLI adapters over this package.

Every flag is validated before any AWS call (a bad value exits 2 with a message naming it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from resnet_serving import MODEL_NAME, ui
from resnet_serving.bench.result import BenchReport
from resnet_serving.cli.flags import add_endpoint_url
from resnet_serving.errors import InputError, NotFound, SageMakerError
from resnet_serving.plan import limits
from resnet_serving.plan.capacity import sagemaker_invocations_target
from resnet_serving.sagemaker.aws import Clients, make_clients
from resnet_serving.sagemaker.deploy import Waiting, deploy, rollback
from resnet_serving.sagemaker.errors import call
from resnet_serving.sagemaker.manage import delete, find_owned, status
from resnet_serving.sagemaker.spec import Autoscaling, DeploySpec, Traffic, parse_model_env
from resnet_serving.settings import ENV_PREFIX, ENV_STORE, env_name, environment
from resnet_serving.store import open_store

DEFAULT_BENCH = "bench-results/bench.json"
WAITING: Waiting | None = None  # how deploy and rollback poll (None: every 15 s); tests set a fast one
# vCPUs by instance size, for the families SageMaker hosts on (m5, c5, r5, m6i, c6i, g4dn, g5, ...).
SIZE_VCPUS = {
    "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "9xlarge": 36, "12xlarge": 48,
    "16xlarge": 64, "18xlarge": 72, "24xlarge": 96, "32xlarge": 128, "48xlarge": 192,
}  # fmt: skip


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", required=True, help="the SageMaker endpoint name")
    add_endpoint_url(p)
    p.add_argument("--region", default=None, help="AWS region (default: $AWS_REGION / $AWS_DEFAULT_REGION)")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    top = subparsers.add_parser(
        "sagemaker",
        help="deploy a store version to a SageMaker endpoint; status, rollback, delete, invoke",
        description="The managed path: the serving image and a store version on a SageMaker real-time or "
        "serverless endpoint, with autoscaling and blue/green updates that roll back on alarms.",
    )
    sub = top.add_subparsers(dest="sagemaker_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("deploy", help="create or update an endpoint serving a store version")
    _common(p)
    p.add_argument("--store", default=environment().get(ENV_STORE) or None, help="s3://BUCKET/PREFIX")
    p.add_argument("--model", default=MODEL_NAME, help=f"model name in the store (default: {MODEL_NAME})")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", help="the store version to deploy")
    which.add_argument("--channel", help="deploy the version this channel points at")
    p.add_argument("--role", required=True, help="the SageMaker execution role ARN")
    p.add_argument("--image", required=True, help="the serving image (ECR URI)")
    p.add_argument(
        "--capacity", type=Path, help="capacity file the defaults below come from (default: the packaged one)"
    )
    p.add_argument("--instance-type", help="real-time instance type (default: the capacity file's)")
    p.add_argument("--instance-count", type=int, help="instances (default: the capacity file's minimum)")
    p.add_argument("--serverless", action="store_true", help="a serverless endpoint instead of instances")
    p.add_argument("--memory-mb", type=int, help="serverless memory: 1024-6144 in steps of 1024")
    p.add_argument("--max-concurrency", type=int, help="serverless concurrency: 1-200")
    p.add_argument("--kms-key", help="KMS key for the model.tar.gz (SSE-KMS), the volumes and data capture")
    p.add_argument("--data-capture", metavar="S3_URI", help="capture requests and responses to s3://BUCKET/PREFIX")
    p.add_argument("--capture-percent", type=int, default=100, help="share of requests captured (default: 100)")
    p.add_argument("--vpc-subnets", type=_csv, default=(), help="comma-separated subnet ids (network isolation on)")
    p.add_argument("--vpc-security-groups", type=_csv, default=(), help="comma-separated security group ids")
    p.add_argument("--startup-timeout", type=int, help="container startup health check timeout, s (60-3600)")
    p.add_argument("--download-timeout", type=int, help="model data download timeout, s (60-3600)")
    p.add_argument("--autoscale-min", type=int, help="fewest instances (default: --instance-count)")
    p.add_argument(
        "--autoscale-max",
        type=int,
        help="most instances (default: the capacity file's; another type: twice the minimum)",
    )
    p.add_argument(
        "--autoscale-target",
        type=float,
        help="invocations per instance per minute (default: the capacity file's; with --bench or another type: "
        "derived from the bench)",
    )
    p.add_argument("--bench", help=f"bench.json to derive the target from (another type: {DEFAULT_BENCH})")
    p.add_argument("--scale-in-cooldown", type=int, default=300, help="seconds (default: 300)")
    p.add_argument("--scale-out-cooldown", type=int, default=60, help="seconds (default: 60)")
    p.add_argument(
        "--traffic", type=_traffic, default=Traffic("CANARY", 10, 600),
        help="blue/green traffic shifting on update: canary:10%%:600s (default), linear:20%%:300s, all-at-once",
    )  # fmt: skip
    p.add_argument(
        "--alarm", action="append", default=[], help="roll back on this CloudWatch alarm (repeatable; default: the "
        "observability stack's resnet-serving-<endpoint>-5xx and -p99-latency, read only, or where missing deploy's "
        "own resnet-serving-<endpoint>-5xx-deploy and -p99-latency-deploy)",
    )  # fmt: skip
    p.add_argument("--p99-latency-ms", type=float, default=1000.0, help="p99 of deploy's own alarm (default: 1000)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds to wait for InService (default: 3600)")
    p.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help=f"a {ENV_PREFIX}* model option for the container, e.g. {env_name('amp')}=bf16 (repeatable)",
    )  # fmt: skip
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("status", help="live version, variants, autoscaling, alarms, last update")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rollback", help="go back to the previous endpoint config (kept by deploy)")
    _common(p)
    p.add_argument("--timeout", type=int, default=3600, help="seconds to wait for InService (default: 3600)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("delete", help="remove the endpoint and what deploy created for it (by its tags)")
    _common(p)
    p.add_argument("--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("invoke", help="classify images through sagemaker-runtime (the same table as predict)")
    _common(p)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--topk", type=int, default=5, help="predictions per image (default: 5)")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=cmd_invoke)


def _traffic(text: str) -> Traffic:
    try:
        return Traffic.parse(text)
    except InputError as e:
        raise argparse.ArgumentTypeError(e.message) from e


def _clients(args: argparse.Namespace) -> Clients:
    return make_clients(args.endpoint_url, args.region)


# ---- deploy -------------------------------------------------------------------------------------------
def capacity_defaults(args: argparse.Namespace) -> None:
    """Fill --instance-type and --instance-count from the capacity file where no flag gave them."""
    sm = limits.load(args.capacity).sagemaker
    if args.instance_type is None:
        args.instance_type = sm.instance_type
    if args.instance_count is None:
        # the file's minimum is in its own instance type: another type starts from the least for AZ spread
        args.instance_count = sm.min_instances if args.instance_type == sm.instance_type else 2


def autoscaling_from_args(args: argparse.Namespace) -> Autoscaling | None:
    capacity_defaults(args)
    if args.serverless:
        return None
    sm = limits.load(args.capacity).sagemaker
    source = args.capacity or f"the packaged {limits.PACKAGED}"
    ours = args.instance_type == sm.instance_type  # the file's max and target are per instance of its type
    lo = args.autoscale_min if args.autoscale_min is not None else args.instance_count
    hi = args.autoscale_max if args.autoscale_max is not None else (sm.max_instances if ours else 2 * lo)
    if args.autoscale_max is None and hi < lo:
        raise InputError(
            f"{lo} instances is above {source}'s sagemaker.max_instances ({hi}): give --autoscale-max, or a "
            "capacity file sized for this load (--capacity)"
        )
    if args.autoscale_target is not None:
        target, how = args.autoscale_target, "--autoscale-target"
    elif ours and args.bench is None:
        target, how = float(sm.invocations_per_minute), f"{source}, sagemaker.invocations_per_minute"
    else:
        target, how = _target_from_bench(args.bench or DEFAULT_BENCH, args.instance_type)
    return Autoscaling(lo, hi, target, args.scale_in_cooldown, args.scale_out_cooldown, how=how)


def _target_from_bench(bench: str, instance_type: str) -> tuple[float, str]:
    size = instance_type.rsplit(".", 1)[-1]
    if size not in SIZE_VCPUS:
        raise InputError(f"no vCPU count known for {instance_type}: give --autoscale-target N")
    if not Path(bench).is_file():
        raise InputError(
            f"no bench results at {bench}: run `resnet-serving bench` (on the instance type if you can), pass "
            "--bench PATH, or give --autoscale-target N (invocations per instance per minute)"
        )
    target = sagemaker_invocations_target(BenchReport.load(bench), instance_vcpus=SIZE_VCPUS[size])
    how = f"from {bench} for {instance_type} ({SIZE_VCPUS[size]} vCPUs): {target.how}"
    ui.info(f"autoscaling target {target.invocations_per_minute} invocations/instance/min, {how}")
    return float(target.invocations_per_minute), how


def spec_from_args(args: argparse.Namespace, version: str) -> DeploySpec:
    capacity_defaults(args)
    if not args.store:
        raise InputError(f"no store given: pass --store s3://BUCKET/PREFIX (or set {ENV_STORE})")
    if not args.serverless and (args.memory_mb is not None or args.max_concurrency is not None):
        raise InputError("--memory-mb and --max-concurrency apply only with --serverless")
    if args.serverless and args.memory_mb is None:
        raise InputError("--serverless needs --memory-mb M (1024-6144 in steps of 1024)")
    if args.capture_percent != 100 and not args.data_capture:
        raise InputError("--capture-percent needs --data-capture s3://BUCKET/PREFIX")
    return DeploySpec(
        endpoint=args.endpoint,
        role=args.role,
        image=args.image,
        store=args.store,
        version=version,
        model=args.model,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        serverless_memory_mb=args.memory_mb if args.serverless else None,
        serverless_max_concurrency=args.max_concurrency if args.serverless else None,
        kms_key=args.kms_key,
        data_capture=args.data_capture,
        capture_percent=args.capture_percent,
        vpc_subnets=args.vpc_subnets,
        vpc_security_groups=args.vpc_security_groups,
        startup_timeout_s=args.startup_timeout,
        download_timeout_s=args.download_timeout,
        traffic=args.traffic,
        alarms=tuple(args.alarm),
        p99_latency_ms=args.p99_latency_ms,
        timeout_s=args.timeout,
        model_env=parse_model_env(args.env),
    )


def cmd_deploy(args: argparse.Namespace) -> int:
    spec = spec_from_args(args, args.version or "0").validate()  # every flag checked before any call
    spec = replace(spec, autoscaling=autoscaling_from_args(args)).validate()
    store = open_store(args.store, endpoint_url=args.endpoint_url)
    version = args.version
    if version is None:
        version = store.resolve_channel(args.model, args.channel)
        if version is None:
            raise NotFound(f"channel {args.channel!r} of {args.model} is not set in {store.uri}")
        ui.info(f"channel {args.channel} -> v{version}")
    outcome = deploy(replace(spec, version=version).validate(), clients=_clients(args), store=store, waiting=WAITING)
    print(f"{outcome.endpoint}: {outcome.action} v{outcome.version} ({outcome.config})")
    return 0


# ---- status -------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    s = status(_clients(args), args.endpoint)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(
        f"{s['endpoint']}: {s['status']}, "
        + (f"v{s['version']} ({s['digest']})" if s["version"] else "version unknown (not tagged by deploy)")
        + f" from {s['config']}",
        highlight=False,
    )
    table = Table(title="variants", title_justify="left")
    for col in ("VARIANT", "INSTANCES", "DESIRED", "SERVERLESS"):
        table.add_column(col)
    for v in s["variants"]:
        table.add_row(
            str(v["name"]), str(v["current_instances"]), str(v["desired_instances"]), str(v["serverless"] or "")
        )
    console.print(table)
    a = s["autoscaling"]
    console.print(
        f"autoscaling: {a['min']}-{a['max']} instances, target {a['target_invocations_per_instance_per_minute']} "
        f"invocations/instance/min, cooldowns in {a['scale_in_cooldown_s']}s / out {a['scale_out_cooldown_s']}s"
        if a
        else "autoscaling: none",
        highlight=False,
    )
    for alarm in s["alarms"]:
        console.print(f"alarm {alarm['name']}: {alarm['state']}", highlight=False)
    last = s["last_update"]
    console.print(f"last update: {last['outcome'] or 'unknown'}", highlight=False)
    if last["failure_reason"]:
        console.print(f"[red]FailureReason: {last['failure_reason']}[/]", highlight=False)
    return 0


# ---- rollback / delete --------------------------------------------------------------------------------
def cmd_rollback(args: argparse.Namespace) -> int:
    if args.timeout < 1:
        raise InputError(f"--timeout must be at least 1 s, got {args.timeout}")
    outcome = rollback(_clients(args), args.endpoint, timeout_s=args.timeout, waiting=WAITING)
    print(f"{outcome.endpoint}: rolled back to v{outcome.version} ({outcome.config})")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    clients = _clients(args)
    owned = find_owned(clients, args.endpoint)
    if owned.empty():
        print(f"nothing of {args.endpoint} to delete (no resources tagged by resnet-serving)")
        return 0
    print("will delete:\n  " + "\n  ".join(owned.lines()))
    print("(the model.tar.gz in the store is kept: other endpoints may use it)")
    if not args.yes:
        if not sys.stdin.isatty():
            raise InputError("delete asks before it removes anything: pass --yes when not on a terminal")
        if input("delete these? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    delete(clients, owned)
    print(f"deleted {len(owned.lines())} resource(s) of {args.endpoint}")
    return 0


# ---- invoke -------------------------------------------------------------------------------------------
def cmd_invoke(args: argparse.Namespace) -> int:
    from resnet_serving.inference.formats import content_type_for

    if not 1 <= args.topk <= 100:
        raise InputError(f"--topk must be between 1 and 100, got {args.topk}")
    datas = []
    for path in args.images:
        try:
            datas.append((path, path.read_bytes()))
        except OSError as e:
            raise InputError(f"{path}: {e.strerror}") from e
    clients = _clients(args)
    table = ui.predictions_table(f"{MODEL_NAME} @ sagemaker:{args.endpoint}")
    caption = ""
    for path, data in datas:
        r = call(
            clients.runtime,
            "invoke_endpoint",
            f"endpoint {args.endpoint} ({path})",
            EndpointName=args.endpoint,
            Body=data,
            ContentType=content_type_for(data),
            Accept="application/json",
            CustomAttributes=f"topk={args.topk}",
        )
        raw = r["Body"].read()
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise SageMakerError(f"{args.endpoint} answered {path} with non-JSON: {raw[:200]!r}") from e
        if args.json:
            print(json.dumps({"image": str(path), "response": body}))
            continue
        caption = ui.add_predictions(table, str(path), body)
    if not args.json and table.row_count:
        table.caption = caption
        Console().print(table)
    return 0
