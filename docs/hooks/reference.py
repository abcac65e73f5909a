"""MkDocs hook: the reference pages whose source is code, generated at build time from the package itself.

Nothing generated is committed, so nothing can drift: each page below is rebuilt from what the code declares on
every `make docs` (and in `make test`, through tests/unit/test_docs_site.py).

==========================  ===============================================================================
page                        source
==========================  ===============================================================================
reference/cli.md            ``resnet_serving.cli.build_parser()``, every subcommand's ``--help``
reference/environment.md    ``resnet_serving.settings.Settings`` (fields, defaults, docs) and the ``ENV_*``
                            names of ``settings`` and ``controller.config``
reference/http-api.md       ``docs/openapi.yaml``
reference/metrics.md        the collectors of ``inference/metrics.py``, ``torchserve/exporter.py`` and
                            ``controller/metrics.py``
reference/chart-values.md   the values table of ``charts/resnet50-serving/README.md`` (itself generated from
                            ``values.yaml`` by tests/chart/chart_values_doc.py and checked by its test)
==========================  ===============================================================================
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
CHART_README = REPO / "charts" / "resnet50-serving" / "README.md"
#: argparse wraps help at the terminal's width: fix it, so the page is the same on every machine.
HELP_COLUMNS = "100"


def _cell(text: object) -> str:
    """One Markdown table cell: no newline, no bare pipe."""
    return " ".join(str(text).split()).replace("|", "\\|")


# ---- the CLI ---------------------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand, in the order ``--help`` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield name, helps.get(name, ""), sub


def cli_page() -> str:
    from resnet_serving.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        parser = build_parser()
        out = [
            "# CLI reference",
            "",
            "Generated from the argparse parser of `resnet-serving` (`resnet_serving.cli.build_parser`) when the",
            "site is built: each section is that command's `--help`. Defaults that read the environment or the",
            "machine (`$AWS_ENDPOINT_URL`, the CPU count) show what they were on the machine that built this page.",
            "",
            "| command | what it does |",
            "|---|---|",
        ]
        commands: list[tuple[str, str, argparse.ArgumentParser]] = []
        for name, help_, sub in _subcommands(parser):
            nested = list(_subcommands(sub))
            commands.append((name, help_, sub))
            commands.extend((f"{name} {n}", h, p) for n, h, p in nested)
        out += [f"| [`{name}`](#{name.replace(' ', '-')}) | {_cell(help_)} |" for name, help_, _ in commands]
        out += ["", "## resnet-serving", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, help_, sub in commands:
            out += [f"## `{name}` {{#{name.replace(' ', '-')}}}", "", _cell(help_), ""]
            out += ["```text", sub.format_help().rstrip(), "```", ""]
        return "\n".join(out)
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


# ---- environment variables -------------------------------------------------------------------------------------


def _commented_constants(module: Any, prefix: str) -> list[tuple[str, str, str]]:
    """(constant, value, its ``#:`` comment) for each string constant named ``prefix*`` in ``module``."""
    source = inspect.getsource(module)
    lines = source.splitlines()
    found: list[tuple[str, str, str]] = []
    previous_end, previous_comment = -1, ""
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        value = getattr(module, name, None)
        comment = []
        i = node.lineno - 2
        while i >= 0 and lines[i].lstrip().startswith("#:"):
            comment.insert(0, lines[i].lstrip()[2:].strip())
            i -= 1
        # a constant right under a commented one, with no comment of its own, belongs to the same group
        text = " ".join(comment) or (previous_comment if node.lineno == previous_end + 1 else "")
        previous_end, previous_comment = node.end_lineno or node.lineno, text
        if name.startswith(prefix) and isinstance(value, str) and not value.endswith("_"):
            found.append((name, value, text))
    return found


def environment_page() -> str:
    from resnet_serving import settings
    from resnet_serving.controller import config as operator_config

    out = [
        "# Environment variables",
        "",
        "Generated from `resnet_serving.settings` when the site is built. Every `RESNET_SERVING_*` variable of the",
        "serving path is a field of `Settings`: its name is `RESNET_SERVING_` and the field's name in upper case,",
        "and it is checked when `serve` or a worker starts. A value it refuses stops the process with an error",
        "that names the variable (exit 2), instead of being ignored. `sagemaker deploy --env KEY=VALUE` checks",
        "the same way before any call.",
        "",
        "## The serving path (`Settings`)",
        "",
        "| variable | default | type | what it sets |",
        "|---|---|---|---|",
    ]
    for f in fields(settings.Settings):
        default = f.default if f.default is not MISSING else None
        shown = "unset" if default in (None, "") else f"`{_cell(default)}`"
        if isinstance(default, bool):
            shown = f"`{int(default)}`"
        kind = str(f.type).replace(" | None", "")
        out.append(f"| `{settings.env_name(f.name)}` | {shown} | {_cell(kind)} | {_cell(f.metadata['doc'])} |")
    out += [
        "",
        "Booleans take `1`/`0`, `true`/`false`, `yes`/`no` or `on`/`off`; integers must be at least 1.",
        "",
        "## Other variables named in `resnet_serving.settings`",
        "",
        "Flag defaults, read where the command-line flags are parsed (a flag always wins over its variable), and",
        "the variables one command sets for the processes it starts.",
        "",
        "| variable | constant in `resnet_serving.settings` | what it is |",
        "|---|---|---|",
    ]
    for name, value, comment in _commented_constants(settings, "ENV_"):
        out.append(f"| `{value}` | `{name}` | {_cell(comment)} |")
    out += [
        "",
        "## The operator (`resnet_serving.controller.config`)",
        "",
        "`resnet-serving operator` reads these when a flag is not given (the chart sets them):",
        "",
        "| variable | constant |",
        "|---|---|",
    ]
    for name, value, _ in _commented_constants(operator_config, "ENV_"):
        out.append(f"| `{value}` | `{name}` |")
    doc = inspect.getdoc(operator_config) or ""
    out += ["", "Their flags and defaults, from the module's docstring:", "", "```text", doc.rstrip(), "```", ""]
    return "\n".join(out)


# ---- the HTTP API ----------------------------------------------------------------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _schema_link(ref: str) -> str:
    name = _ref_name(ref)
    return f"[`{name}`](#schema-{name.lower()})"


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return _schema_link(schema["$ref"])
    for key in ("oneOf", "allOf", "anyOf"):
        if key in schema:
            return f"{key}: " + ", ".join(_schema_type(s) for s in schema[key])
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    bits = [f"`{kind}`" if kind else ""]
    if "format" in schema:
        bits.append(f"({schema['format']})")
    if "enum" in schema:
        bits.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    bounds = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "minItems", "maxItems", "maxLength") if k in schema]
    if bounds:
        bits.append("; " + ", ".join(bounds))
    return " ".join(b for b in bits if b)


def http_api_page() -> str:
    spec = yaml.safe_load((DOCS / "openapi.yaml").read_text(encoding="utf-8"))
    components = spec.get("components", {})

    def resolve(obj: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in obj:
            section, name = obj["$ref"].split("/")[-2:]
            obj = components[section][name]
        return obj

    info = spec["info"]
    out = [
        "# HTTP API",
        "",
        f"Generated from [`openapi.yaml`](../openapi.yaml) (OpenAPI {spec['openapi']}, {info['title']} "
        f"{info['version']}) when the site is built. `tests/integration/test_openapi_contract.py` runs schemathesis "
        "from that file against a real `serve`, and `tests/unit/test_openapi_doc.py` holds its limits, error codes "
        "and id rule to the code's.",
        "",
        info.get("description", "").rstrip(),
        "",
        "Servers: " + ", ".join(f"`{s['url']}` ({s.get('description', '')})" for s in spec.get("servers", [])),
        "",
    ]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            out += [f"## `{method.upper()} {path}`", "", f"**{op.get('summary', '')}**", ""]
            if op.get("description"):
                out += [op["description"].rstrip(), ""]
            params = [resolve(p) for p in op.get("parameters", [])]
            if params:
                out += ["| parameter | in | required | schema | description |", "|---|---|---|---|---|"]
                for p in params:
                    out.append(
                        f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                        f"{_cell(_schema_type(p.get('schema', {})))} | {_cell(p.get('description', ''))} |"
                    )
                out.append("")
            if "requestBody" in op:
                body = resolve(op["requestBody"])
                out += ["Request body" + (" (required)" if body.get("required") else "") + ":", ""]
                if body.get("description"):
                    out += [body["description"].rstrip(), ""]
                out += ["| Content-Type | schema |", "|---|---|"]
                for ctype, media in body.get("content", {}).items():
                    out.append(f"| `{ctype}` | {_cell(_schema_type(media.get('schema', {})))} |")
                out.append("")
            out += ["| status | description | body | headers |", "|---|---|---|---|"]
            for status, response in op.get("responses", {}).items():
                r = resolve(response)
                bodies = "; ".join(
                    f"`{ctype}`: {_schema_type(media.get('schema', {}))}"
                    for ctype, media in r.get("content", {}).items()
                )
                headers = ", ".join(f"`{h}`" for h in r.get("headers", {}))
                out.append(f"| {status} | {_cell(r.get('description', ''))} | {_cell(bodies)} | {headers} |")
            out.append("")
    out += ["## Schemas", ""]
    for name, schema in components.get("schemas", {}).items():
        out += [f"### `{name}` {{#schema-{name.lower()}}}", ""]
        if schema.get("description"):
            out += [_cell(schema["description"]), ""]
        parts = schema.get("allOf", [schema])
        for part in parts:
            if "$ref" in part:
                out += [f"All the fields of {_schema_link(part['$ref'])}, and:", ""]
                continue
            props = part.get("properties")
            if not props:
                out += [f"Type: {_schema_type(part)}", ""]
                continue
            required = set(part.get("required", []))
            out += ["| field | required | schema | description |", "|---|---|---|---|"]
            for field_name, prop in props.items():
                out.append(
                    f"| `{field_name}` | {'yes' if field_name in required else 'no'} | {_cell(_schema_type(prop))} | "
                    f"{_cell(prop.get('description', ''))} |"
                )
            out.append("")
    return "\n".join(out)


# ---- metrics ---------------------------------------------------------------------------------------------------


def _prometheus_rows(collectors: list[Any]) -> list[str]:
    rows = []
    for c in collectors:
        for family in c.describe() or c.collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = c._labelnames
            kind = family.type
            buckets = getattr(c, "_upper_bounds", None)
            if buckets:
                kind += ", buckets " + ", ".join(f"{b:g}" for b in buckets if b != float("inf"))
            shown = ", ".join(f"`{x}`" for x in labels)
            rows.append(f"| `{name}` | {_cell(kind)} | {shown} | {_cell(family.documentation)} |")
    return rows


class _NoTorchServe:
    """A management client that finds no model: the queue collector then describes its family with no sample."""

    def describe(self, model: str, version: str | None = None) -> list[dict[str, Any]]:
        return []


def metrics_page() -> str:
    from prometheus_client.metrics import MetricWrapperBase

    from resnet_serving.controller import metrics as operator_metrics
    from resnet_serving.inference import metrics as worker_metrics
    from resnet_serving.torchserve import exporter

    worker = [v for v in vars(worker_metrics).values() if isinstance(v, MetricWrapperBase)]
    queue = exporter.QueueCollector.__new__(exporter.QueueCollector)
    queue.client, queue.model = _NoTorchServe(), "resnet50"
    queue_family = next(iter(queue.collect()))
    header = ["| series | type | labels | what it is |", "|---|---|---|---|"]
    out = [
        "# Metrics",
        "",
        "Generated from the collectors in the code when the site is built. How to scrape them, and what each",
        "port is: [Observability](../how-to/observability.md).",
        "",
        "## `serve`'s model-metrics port (`--model-metrics-port`, 8083)",
        "",
        "Written by each TorchServe worker with `prometheus_client` (multiprocess mode) and summed by `serve`",
        "(`resnet_serving.inference.metrics`), plus the queue depth that `serve` reads from TorchServe's",
        "management API at scrape time (`resnet_serving.torchserve.exporter`).",
        "",
        *header,
        *_prometheus_rows(worker),
        f"| `{queue_family.name}` | {queue_family.type} | `model`, `version` | {_cell(queue_family.documentation)} |",
        "",
        "TorchServe's own metrics are on `--metrics-port` (8082): summed-microsecond counters whose",
        '`model_version` label is always `"default"`.',
        "",
        "## The operator's port (`operator.metricsPort`, 8080) {#operator}",
        "",
        "Rendered by `resnet_serving.controller.metrics.Metrics.render` (no client library), beside `/healthz`",
        "and `/readyz`. `namespace` and `name` are the ModelDeployment's.",
        "",
        "| series | type | labels | what it is |",
        "|---|---|---|---|",
    ]
    # One of each observation, so that every family renders a sample and its labels show.
    recorded = operator_metrics.Metrics()
    recorded.observe_state("ns", "md", deployment="d", version="1", phase="Ready", drifted=False)
    recorded.sync_error("ns", "md", "store")
    recorded.rollback("ns", "md")
    recorded.rollout_finished("ns", "md", "succeeded", 1.0)
    families: dict[str, dict[str, Any]] = {}
    for line in recorded.render().splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) (.*)", line)
        if m:
            families.setdefault(m.group(2), {"labels": []})[m.group(1)] = m.group(3)
            continue
        sample = re.match(r"([a-z_]+?)(?:_bucket|_sum|_count)?\{(.*)\} ", line)
        if sample and sample.group(1) in families:
            for label in re.findall(r'(\w+)="', sample.group(2)):
                if label not in families[sample.group(1)]["labels"] and label != "le":
                    families[sample.group(1)]["labels"].append(label)
    for name, parts in families.items():
        kind = parts.get("TYPE", "")
        if kind == "histogram":
            kind += ", buckets " + ", ".join(f"{b:g}" for b in operator_metrics.DURATION_BUCKETS)
        shown = ", ".join(f"`{x}`" for x in parts["labels"])
        out.append(f"| `{name}` | {_cell(kind)} | {shown} | {_cell(parts.get('HELP', ''))} |")
    out.append("")
    return "\n".join(out)


# ---- chart values ----------------------------------------------------------------------------------------------


def chart_values_page() -> str:
    text = CHART_README.read_text(encoding="utf-8")
    m = re.search(r"<!-- values:begin[^>]*-->\n(.*?)<!-- values:end -->", text, re.S)
    if not m:
        raise ValueError(f"{CHART_README}: no values:begin … values:end block")
    return "\n".join(
        [
            "# Chart values",
            "",
            "Every value of the Helm chart `charts/resnet50-serving`, taken when the site is built from the table in",
            "the chart's own README, which `tests/chart/chart_values_doc.py` generates from the comments in",
            "`values.yaml` (its test fails when the two disagree). `values.schema.json` checks types and ranges and",
            "rejects unknown keys; the templates add cross-field checks (HPA bounds, PDB against replicas, grace",
            "period against the preStop sleep, HTTPS for internet-facing ALBs).",
            "",
            m.group(1).rstrip(),
            "",
        ]
    )


#: Each generated page and the function that writes it.
PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/environment.md": environment_page,
    "reference/http-api.md": http_api_page,
    "reference/metrics.md": metrics_page,
    "reference/chart-values.md": chart_values_page,
}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, page in PAGES.items():
        if (DOCS / path).exists():
            raise ValueError(f"docs/{path} is generated by docs/hooks/reference.py: remove the committed file")
        files.append(File.generated(config, path, content=page()))
    return files
