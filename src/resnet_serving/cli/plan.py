"""`resnet-serving plan`: how many pods, nodes or instances a load needs, and what they cost per month; with
``--batch-images N --deadline D``, what one batch run of N images within D needs and costs instead."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from resnet_serving.files import atomic_write, atomic_write_text

DEFAULT_BENCH = Path("bench-results") / "bench.json"
#: The checked-in bench of a quiet 2-vCPU machine, for a first look (in a checkout of the repository).
SAMPLE_BENCH = Path("tests") / "fixtures" / "bench-2vcpu.json"

DESCRIPTION = f"""\
Pods, nodes or instances for a load, and $/month per complete option: compute + the shipped front door
(API Gateway REST, WAF, X-Ray, logs, Cognito) + the shared lines the stacks in infra/templates and
k8s/eksctl/cluster.yaml create. It needs a bench file: the bench.json that `resnet-serving bench --out
bench-results` writes on the machine you will serve from; capacity is never invented. For a first look, the
repository has one from a quiet 2-vCPU machine: --bench {SAMPLE_BENCH}. The shipped cluster is eu-west-1 with
c7i.2xlarge nodes: --region eu-west-1 --node-type c7i.2xlarge prices it.

Batch mode: --batch-images N --deadline D (90m, 2h, 1h30m or seconds) instead of the load and --p99-ms sizes
and prices one run that classifies N images within D: `batch run` pods in an EKS Indexed Job on on-demand or
spot nodes (rate: the raw model at its best batch, unverified for batch run until `bench --batch` measures it)
and SageMaker Batch Transform instances (rate: the best served level)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="capacity and $/month for a load on EKS, SageMaker real-time and serverless, from a bench.json",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load = p.add_mutually_exclusive_group()
    load.add_argument("--rps", type=float, help="peak requests per second")
    load.add_argument("--users", type=float, help="concurrent users (with --think-time)")
    p.add_argument("--think-time", type=float, help="seconds between one user's requests (with --users)")
    p.add_argument("--p99-ms", type=float, help="p99 latency objective per request, ms (needed but in batch mode)")
    p.add_argument(
        "--batch-images",
        metavar="N",
        help="batch mode (with --deadline): size and price one run that classifies N images",
    )
    p.add_argument(
        "--deadline",
        metavar="DURATION",
        help="batch mode (with --batch-images): the time the run must finish in, like 90m, 2h, 1h30m or 7200 (s)",
    )
    p.add_argument(
        "--bench",
        type=Path,
        default=DEFAULT_BENCH,
        help=f"bench.json from `resnet-serving bench` (needed; default: {DEFAULT_BENCH}; first look: {SAMPLE_BENCH})",
    )
    p.add_argument("--prices", type=Path, help="prices JSON replacing the packaged one (same format)")
    p.add_argument("--region", default="us-east-1", help="region in the prices file (default: us-east-1)")
    p.add_argument("--utilisation", type=float, help="highest load per unit, share of capacity (default: 0.7)")
    p.add_argument("--azs", type=int, help="availability zones (N+1: any AZs-1 carry the load; default: 3)")
    p.add_argument(
        "--node-type",
        help="EKS node instance type (default: c5.2xlarge for a CPU bench; for a GPU or Inferentia bench, the "
        "cheapest priced type with the bench's accelerator)",
    )
    p.add_argument(
        "--token-holders",
        type=int,
        help="processes holding a Cognito client-credentials token, each renewing it hourly (default: 1)",
    )
    p.add_argument(
        "--instance-type",
        action="append",
        dest="instance_types",
        help="SageMaker instance type to price (repeatable; default: every one in the prices file)",
    )
    p.add_argument("--json", type=Path, dest="json_out", help="write the plan (or the batch plan) as JSON to this file")
    p.add_argument("--plot", type=Path, help="plot $/month against load to this PNG")
    p.add_argument("--emit-values", action="store_true", help="print chart values (YAML) for `helm install -f`")
    p.add_argument(
        "--emit-capacity",
        type=Path,
        metavar="FILE",
        help="write the install's limits (throttle, burst, WAF rate, SageMaker min/max/target, HPA and node group "
        "sizes) for this load as a capacity file: the first --instance-type is SageMaker's",
    )
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    from resnet_serving.bench.result import BenchReport
    from resnet_serving.errors import InputError
    from resnet_serving.plan.planner import load_from_args, make_plan
    from resnet_serving.plan.prices import load_prices

    if args.batch_images is not None or args.deadline is not None:
        return cmd_batch_plan(args)
    if args.p99_ms is None:
        raise InputError("--p99-ms is needed: the p99 latency objective per request, in ms")
    if args.users is not None and args.think_time is None:
        raise InputError("--users needs --think-time (seconds between one user's requests)")
    if args.rps is not None and args.think_time is not None:
        raise InputError("--think-time goes with --users, not with --rps")
    load = load_from_args(args.rps, args.users, args.think_time)
    bench = BenchReport.load(args.bench)
    prices = load_prices(args.prices, args.region)

    def plan_for(lo: Any) -> Any:
        return make_plan(
            bench,
            prices,
            lo,
            p99_ms=args.p99_ms,
            utilisation=0.7 if args.utilisation is None else args.utilisation,
            azs=3 if args.azs is None else args.azs,
            node_type=args.node_type,
            instance_types=args.instance_types,
            token_holders=1 if args.token_holders is None else args.token_holders,
            bench_file=str(args.bench),
        )

    plan = plan_for(load)
    if args.emit_values:
        print(values_yaml(plan), end="")
    else:
        print_plan(plan)
    if args.emit_capacity:
        atomic_write_text(args.emit_capacity, capacity_json(plan, bench, prices, args))
        print(f"wrote {args.emit_capacity}", file=sys.stderr)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(plan.to_dict(), indent=2, allow_nan=False) + "\n")
    if args.plot:
        from resnet_serving.plan.planner import Load

        loads = sorted({load.rps * f for f in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)})
        series = [(lo, plan_for(Load(lo, ""))) for lo in loads]
        plot(series, load.rps, args.plot)
    return 0


#: The serving plan's flags, refused in batch mode (a batch run has no request rate, latency objective or zones).
SERVING_ONLY = (
    "rps", "users", "think_time", "p99_ms", "utilisation", "azs", "token_holders", "plot", "emit_values",
    "emit_capacity",
)  # fmt: skip


def cmd_batch_plan(args: argparse.Namespace) -> int:
    """``--batch-images N --deadline D``: the batch table instead of the serving plan."""
    from resnet_serving.bench.result import BenchReport
    from resnet_serving.errors import InputError
    from resnet_serving.plan.batch import make_batch_plan, parse_duration, parse_images
    from resnet_serving.plan.prices import load_prices

    if args.batch_images is None:
        raise InputError("--deadline goes with --batch-images N: the number of images the batch run classifies")
    if args.deadline is None:
        raise InputError("--batch-images needs --deadline: the time the run must finish in, like 2h or 90m")
    given = [f"--{name.replace('_', '-')}" for name in SERVING_ONLY if getattr(args, name) not in (None, False)]
    if given:
        raise InputError(f"{', '.join(given)}: the serving plan's, not batch mode's (--batch-images, --deadline)")
    images, deadline_s = parse_images(args.batch_images), parse_duration(args.deadline)
    plan = make_batch_plan(
        BenchReport.load(args.bench),
        load_prices(args.prices, args.region),
        images=images,
        deadline_s=deadline_s,
        node_type=args.node_type,
        instance_types=args.instance_types,
        bench_file=str(args.bench),
    )
    print_batch_plan(plan)
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(plan.to_dict(), indent=2, allow_nan=False) + "\n")
    return 0


def print_batch_plan(plan: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from resnet_serving.plan.batch import duration_words

    console = Console(width=None if sys.stdout.isatty() else 200)

    def say(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    say(
        f"Batch: {plan.images:,} images within {duration_words(plan.deadline_s)} ({plan.deadline_s:,.0f} s): "
        f"{plan.needed_img_s:,.1f} images/s needed"
    )
    say(
        f"Rate, EKS (batch run, no HTTP): {plan.raw_how}; × {plan.efficiency:g}, batch run's target share of the "
        "raw model (issue #30). UNVERIFIED for batch run: the raw model's figure until `bench --batch` measures "
        "batch run itself"
    )
    say(f"Rate, Batch Transform (one /invocations request per object): {plan.served_how}")
    say(
        "Sizing: the fewest units whose rate × deadline covers the images; each node or instance billed for the "
        "wall time (per-second billing). Start-up (nodes, image pull, model fetch) is not included: leave room "
        f"for it in the deadline. Prices {plan.region} from {plan.prices_file}"
    )
    notes: list[str] = []
    table = Table(title=f"resnet-serving plan: {plan.images:,} images within {duration_words(plan.deadline_s)}")
    for col in ("option", "units", "shards", "nodes", "img/s/unit", "wall time", "billed h", "$ for the run", "notes"):
        table.add_column(col, justify="left" if col in ("option", "units") else "right", no_wrap=True)
    for r in plan.rows:
        if r.note and r.note not in notes:
            notes.append(r.note)
        table.add_row(
            r.option + (" (estimated)" if r.estimated else ""),
            r.units,
            "" if r.shards is None else str(r.shards),
            "" if r.nodes is None else str(r.nodes),
            f"{r.per_unit_img_s:.1f}",
            "" if r.wall_s is None else duration_words(r.wall_s),
            "" if r.billed_hours is None else f"{r.billed_hours:.2f}",
            "n/a" if r.usd is None else f"${r.usd:,.2f}",
            f"[{notes.index(r.note) + 1}]" if r.note else "",
        )
    console.print(table)
    for i, note in enumerate(notes, 1):
        say(f"[{i}] {note}")
    for line in provenance_lines(plan.provenance):
        say(line)


def _ms(x: float | None) -> str:
    if x is None:
        return ""
    return "unbounded" if not math.isfinite(x) else f"{x:.0f}"


def _usd(x: float | None) -> str:
    return "n/a" if x is None else f"${x:,.0f}"


def print_plan(plan: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(f"Load: {plan.load.how}", highlight=False)
    console.print(f"p99 objective: {plan.p99_target_ms:g} ms (forward pass alone: {plan.forward_ms:.1f} ms)")
    console.print(f"Capacity: {plan.bench_how}", highlight=False)
    console.print(
        f"Sizing: each unit loaded to {plan.utilisation:.0%} of its capacity at most; zone headroom N+1 over "
        f"{plan.azs} AZs (any {plan.azs - 1} carry the load); prices {plan.region} from {plan.prices_file}, "
        "730 h/month",
        highlight=False,
    )
    notes: list[str] = []

    def ref(note: str) -> str:
        if not note:
            return ""
        notes.append(note)
        return f"[{len(notes)}]"

    table = Table(title=f"resnet-serving plan: {plan.load.rps:g} requests/s, p99 <= {plan.p99_target_ms:g} ms")
    for col in ("option", "units", "base", "+zone", "req/s/unit", "p99 ms", "p99 1 AZ down", "$/month", "notes"):
        table.add_column(col, justify="left" if col in ("option", "units") else "right", no_wrap=True)
    for r in plan.rows:
        if r.kind != "compute":
            continue
        table.add_row(
            r.option + (" (estimated)" if r.estimated else ""),
            r.units,
            "" if r.base_units is None else str(r.base_units),
            "" if r.headroom_units is None else str(r.headroom_units),
            "" if r.per_unit_rps is None else f"{r.per_unit_rps:.1f}",
            _ms(r.p99_ms),
            _ms(r.p99_zone_down_ms),
            _usd(r.usd_month),
            ref(r.note),
        )
    console.print(table)

    lines = Table(title="Front door and shared lines: what infra/templates and k8s/eksctl/cluster.yaml create")
    for col in ("line", "carried by", "$/month", "notes", "prices"):
        lines.add_column(col, justify="right" if col in ("$/month", "notes") else "left", no_wrap=True)
    carried = {"front door": "every option", "all": "every option", "EKS": "EKS", "SageMaker": "SageMaker"}
    for r in plan.rows:
        if r.kind != "line":
            continue
        lines.add_row(
            r.option + (" (estimated)" if r.estimated else ""),
            carried.get(r.scope, r.scope),
            _usd(r.usd_month),
            ref(r.note),
            r.resources,
        )
    console.print(lines)

    doors = Table(title=f"Front door at {plan.load.rps:g} requests/s: REST API (shipped) against the alternatives")
    for col in ("front door", "$/month", "fronts", "notes"):
        doors.add_column(col, justify="right" if col in ("$/month", "notes") else "left", no_wrap=True)
    for d in plan.front_doors:
        doors.add_row(d.name + (" (estimated)" if d.estimated else ""), _usd(d.usd_month), d.paths, ref(d.note))
    console.print(doors)

    totals = Table(title="Total per complete option: compute + front door (REST API, shipped) + shared lines")
    for col in ("option", "compute", "front door", "shared", "total $/month"):
        totals.add_column(col, justify="left" if col == "option" else "right", no_wrap=True)
    for t in plan.totals:
        totals.add_row(
            t.option + (" (estimated)" if t.estimated else ""),
            _usd(t.compute),
            _usd(t.front_door),
            _usd(t.shared),
            _usd(t.total),
        )
    console.print(totals)
    for i, note in enumerate(notes, 1):
        console.print(f"[{i}] {note}", highlight=False, markup=False, soft_wrap=True)
    for line in provenance_lines(plan.provenance):
        console.print(line, highlight=False, markup=False, soft_wrap=True)


def provenance_lines(prov: dict[str, Any]) -> list[str]:
    """Where the figures came from: the bench (file, machine, date, payload) and every price entry used."""
    b, p = prov["bench"], prov["prices"]
    pay = b["payload"]
    size = f", {pay['size'][0]}×{pay['size'][1]}" if pay.get("size") else ""
    out = [
        f"Bench: {b['file'] or 'given'}: device {b['device']}, CPU {b['cpu'] or 'not recorded'}, {b['vcpus']} vCPU(s); "
        f"date {b['date'] or 'not recorded in the bench file'}; payload {pay['file'] or 'unnamed'}, "
        f"{pay['bytes']:,} B{size}",
    ]
    dates = p["as_of"]
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    out.append(
        f"Prices: {p['region']} from {p['file']}, {p['hours_per_month']:g} h/month; entered by hand from AWS's "
        f"public price pages, as of {when}; nothing is fetched at run time. Each entry used, its date and source:"
    )
    for key, e in p["entries"].items():
        est = ", estimated" if e["estimated"] else ""
        out.append(f"  {key} ({e['as_of']}{est}): {e['source']}")
    return out


def capacity_json(plan: Any, bench: Any, prices: Any, args: argparse.Namespace) -> str:
    """The capacity file for this plan (resnet_serving.plan.limits): SageMaker's limits for the first
    --instance-type, EKS's for the plan's node type."""
    from resnet_serving.errors import InputError
    from resnet_serving.plan.capacity import bench_capacity
    from resnet_serving.plan.limits import from_plan
    from resnet_serving.plan.planner import bench_accelerator, default_node_type, pod_memory_gib, pods_per_node

    if not args.instance_types:
        raise InputError("--emit-capacity needs --instance-type: the SageMaker instance type the limits are for")
    node_type = args.node_type or default_node_type(prices, bench_accelerator(bench))
    node = prices.entry("ec2_on_demand", node_type)
    per_node = pods_per_node(node["vcpus"], node["memory_gib"], bench_capacity(bench).vcpus, pod_memory_gib(bench))
    limits = from_plan(
        plan, bench=str(args.bench), instance_type=args.instance_types[0], node_type=node_type, pods_per_node=per_node
    )
    return limits.to_json()


def values_yaml(plan: Any) -> str:
    import yaml

    v = plan.values
    head = (
        f"# resnet-serving plan: {plan.load.rps:g} requests/s at p99 <= {plan.p99_target_ms:g} ms\n"
        f"# minReplicas carries that load with one AZ down; maxReplicas leaves 2x for bursts.\n"
        f"# {plan.bench_how}\n"
    )
    return head + yaml.safe_dump(v, sort_keys=False)


def plot(series: list[tuple[float, Any]], rps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options = [r.option for r in series[0][1].rows if r.kind == "compute"]
    fig, ax = plt.subplots(figsize=(9, 5))
    for name in options:
        xs, ys = [], []
        for lo, plan in series:
            row = next(r for r in plan.rows if r.option == name)
            if row.usd_month is not None:
                xs.append(lo)
                ys.append(row.usd_month)
        if xs:
            ax.plot(xs, ys, "o-", label=name)
    ax.axvline(rps, color="grey", linestyle=":", label=f"planned load {rps:g} req/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("load (requests/s)")
    ax.set_ylabel("$/month (730 h)")
    ax.set_title("resnet-serving plan: compute $/month against load")
    ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    print(f"wrote {path}", file=sys.stderr)
