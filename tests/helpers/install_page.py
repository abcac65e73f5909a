"""The install rehearsal: docs/how-to/install-aws.md's block, run in bash with every tool replaced by a stand-in.

:class:`Rehearsal` writes one small executable per tool into a directory that is the block's whole ``PATH``
(so a command no stand-in knows fails with "unknown step"), and each one calls back into this module
(``python -m tests.helpers.install_page TOOL ARGS``). A stand-in either runs the real thing against what stands
in for AWS here (the moto server on loopback: S3, KMS, STS, SageMaker, CloudWatch, Application Auto Scaling,
ECR; the local registry; ``helm template``) or checks the command with the tool's own parser where nothing can
run it (the AWS CLI's parser for ``aws``; eksctl, Helm and kubectl by the rules below), and appends what it did
to a log the test reads. ``out`` answers from the committed templates' outputs, for stacks deployed earlier.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import REPO
from tests.helpers.chart import CUSTOM_METRICS_API, MONITORING_APIS
from tests.helpers.docs_pages import INSTALL_AWS_PAGE

BEGIN, END = "<!-- install-aws:begin -->", "<!-- install-aws:end -->"
TEMPLATES = REPO / "infra" / "templates"
CONFIG = json.loads((REPO / "infra" / "config.json").read_text(encoding="utf-8"))
ACCOUNT = "123456789012"
#: The tools a stand-in exists for; any other command in the block is an unknown step.
TOOLS = ("aws", "eksctl", "helm", "kubectl", "docker", "make", "curl", "python", "grep", "resnet-serving")
#: The chart the page installs, and the release and namespace it must use.
CHART, RELEASE, NAMESPACE = "charts/resnet50-serving", "resnet50-serving", CONFIG["eks"]["namespace"]
#: The digest the docker stand-in lists first: another registry's, as `docker image inspect` may (issue #28).
OTHER_REGISTRY_DIGEST = "localhost:5000/resnet-serving@sha256:" + "1" * 64
CLUSTER_STACK = "eksctl-resnet-serving-cluster"
KUBE_VERSION = "1.33.0"
EKSCTL_CONFIG = REPO / "k8s" / "eksctl" / "cluster.yaml"
#: The third-party chart repositories the block may add, by the name it gives them, and their published URLs.
HELM_REPOS = {
    "eks": "https://aws.github.io/eks-charts",
    "autoscaler": "https://kubernetes.github.io/autoscaler",
    "prometheus-community": "https://prometheus-community.github.io/helm-charts",
}
#: What `helm install` of a third-party chart adds to the APIs the cluster serves (tests/helpers/chart.py's names).
CHART_APIS = {
    "prometheus-community/kube-prometheus-stack": list(MONITORING_APIS),
    "prometheus-community/prometheus-adapter": [CUSTOM_METRICS_API],
}
#: The ConfigMap the chart ships the adapter rule in, and its key in the prometheus-adapter chart's values form.
ADAPTER_CONFIGMAP, ADAPTER_KEY = f"{RELEASE}-adapter-rule", "values.yaml"
PLACEHOLDER = re.compile(r"^<[^<>]+>$")
REGION_RE = re.compile(r"\b(?:us|eu|ap|ca|sa|me|af|il|mx)-(?:gov-)?[a-z]+-\d\b")


# ---- the page ----------------------------------------------------------------------------------------------------
def block(text: str | None = None) -> str:
    """The bash between the page's install-aws markers (``text``: another version of the page)."""
    text = INSTALL_AWS_PAGE.read_text(encoding="utf-8") if text is None else text
    body = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    return body.removeprefix("```bash").removesuffix("```").strip() + "\n"


def commands(body: str) -> list[str]:
    """The block's command lines (continuations joined), comments and blank lines left out."""
    joined = body.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# ---- the stacks as the rehearsal deploys them ---------------------------------------------------------------------
def template(name: str) -> dict[str, Any]:
    return json.loads((TEMPLATES / f"{name}.json").read_text(encoding="utf-8"))


def stack_outputs(region: str, key_arn: str, overrides: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Every committed template's outputs as a deployed stack in ``region`` would give them: intrinsic functions
    resolved (tests/helpers/iam_eval.py), the store key's ARN moto's, anything no template can tell a stand-in."""
    from tests.helpers import iam_eval

    class Regional(iam_eval.Template):
        def ref(self, name: str) -> str:
            return region if name == "AWS::Region" else super().ref(name)

    outputs: dict[str, dict[str, str]] = {}
    store = Regional.load(TEMPLATES / "resnet-serving-store.json")
    keys = [lid for lid, r in store.resources.items() if r["Type"] == "AWS::KMS::Key"]
    store.attrs.update({f"{lid}.Arn": key_arn for lid in keys})
    for path in sorted(TEMPLATES.glob("*.json")):
        t = store if path.name == store.name else Regional.load(path, imports=store.exports())
        stack = path.stem
        values = {}
        for key, spec in t.body.get("Outputs", {}).items():
            try:
                values[key] = str(t.resolve(spec["Value"]))
            except iam_eval.PolicyError:
                values[key] = f"{stack}-{key}-example"  # an attribute only CloudFormation knows (a user pool's id)
        outputs[stack] = values
    for dotted, value in (overrides or {}).items():
        stack, key = dotted.split(".", 1)
        outputs[stack][key] = value
    outputs[CLUSTER_STACK] = {"SubnetsPrivate": "subnet-0a,subnet-0b,subnet-0c"}
    return outputs


# ---- the rehearsal ------------------------------------------------------------------------------------------------
@dataclass
class Rehearsal:
    """One run of a block: the stand-ins' directory, their shared state and the log they append to."""

    root: Path
    moto_url: str
    outputs: dict[str, dict[str, str]]
    real_docker: bool = False
    keep_going: bool = False
    placeholders: dict[str, str] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def log_file(self) -> Path:
        return self.root / "log.jsonl"

    def prepare(self) -> None:
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            stub = bin_dir / tool
            stub.write_text(
                f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m tests.helpers.install_page {tool} "$@"\n'
            )
            stub.chmod(0o755)
        work = self.root / "work"
        work.mkdir(exist_ok=True)
        for name in ("infra", "charts", "k8s", "tests"):  # the block's relative paths, from a scratch directory
            if not (work / name).exists():
                (work / name).symlink_to(REPO / name)
        (self.root / "home").mkdir(exist_ok=True)
        (self.root / "credentials").write_text(
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
        )
        state = {
            "moto": self.moto_url,
            "outputs": self.outputs,
            "real_docker": self.real_docker,
            "keep_going": self.keep_going,
            "deployed": [],
            "deleted": [],
            "repos": [],
            "releases": [],
            "installed": {},
            "apis": [],
            "images": {},
            "rolled_out": False,
            "cluster": None,
        }
        self.state_file.write_text(json.dumps(state))
        self.log_file.write_text("")

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TMPDIR", "HELM", "KUBECTL")}
        return {
            **keep,
            "PATH": str(self.root / "bin"),
            "HOME": str(self.root / "home"),
            "PYTHONPATH": str(REPO),
            "INSTALL_REHEARSAL": str(self.root),
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_CONFIG_FILE": str(self.root / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def script(self, body: str) -> str:
        """The block with its placeholders filled (``NAME='<...>'`` lines get example values)."""
        lines = []
        for line in body.splitlines():
            m = re.fullmatch(r"([A-Z_]+)='(<[^']+>)'", line.strip())
            if m and m.group(1) in self.placeholders:
                line = f"{m.group(1)}={shlex.quote(self.placeholders[m.group(1)])}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def run(self, body: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        self.prepare()
        flags = "set -uo pipefail" if self.keep_going else "set -euo pipefail"
        # PATH holds only the stand-ins: bash calls this for any other command, so none runs unchecked
        flags += '\ncommand_not_found_handle() { echo "unknown step: add it to the rehearsal: $*" >&2; return 127; }'
        return subprocess.run(
            ["/bin/bash", "-c", f"{flags}\n{self.script(body)}"],
            cwd=self.root / "work",
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())


# ---- the stand-ins (run as `python -m tests.helpers.install_page TOOL ARGS` from the block) ----------------------
class StepError(Exception):
    """The command is wrong by the tool, the templates, the chart or the order of the block."""


class Stub:
    def __init__(self, tool: str, argv: list[str]) -> None:
        self.tool, self.argv = tool, argv
        self.dir = Path(os.environ["INSTALL_REHEARSAL"])
        self.loaded = (self.dir / "state.json").read_text()
        self.state = json.loads(self.loaded)
        self.region = os.environ.get("AWS_REGION", "")
        self.status = "checked"
        self.unverified = False
        self.notes: list[str] = []
        self.soft: list[str] = []

    def fail(self, error: str) -> None:
        """A finding that need not stop the step: raised, or with keep_going collected and the step goes on."""
        if not self.state["keep_going"]:
            raise StepError(error)
        self.soft.append(error)
        print(f"install rehearsal: {self.tool} {' '.join(self.argv)}: {error}", file=sys.stderr)

    def save(self) -> None:
        # the two sides of a pipe run at once: only one that changed the state may write it back
        if self.state != json.loads(self.loaded):
            (self.dir / "state.json").write_text(json.dumps(self.state))

    def record(self, error: str | None = None, **extra: Any) -> None:
        entry = {"tool": self.tool, "argv": self.argv, "status": "error" if error else self.status, **extra}
        if error or self.soft:
            entry["status"] = "error"
            entry["error"] = "; ".join([*self.soft, *([error] if error else [])])
        if self.notes:
            entry["notes"] = self.notes
        if self.unverified:
            entry["unverified"] = True
        entry["profile"] = os.environ.get("AWS_PROFILE")
        with open(self.dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def real(self, argv: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> int:
        """Run the real command, its output passed through, as "ran"."""
        self.status = "ran"
        proc = subprocess.run(argv, input=stdin, text=True, env=env, check=False, timeout=1800)
        if proc.returncode != 0:
            raise StepError(f"{' '.join(argv[:3])} … exited {proc.returncode}")
        return 0

    def main(self) -> int:
        try:
            rc = getattr(self, "tool_" + self.tool.replace("-", "_"))()
        except StepError as e:
            self.record(str(e))
            print(f"install rehearsal: {self.tool} {' '.join(self.argv)}: {e}", file=sys.stderr)
            return 0 if self.state["keep_going"] and self.status != "ran" else 1
        self.save()
        self.record()
        return rc

    # -- aws -------------------------------------------------------------------------------------------------------
    def tool_aws(self) -> int:
        from awscli.argparser import ArgTableArgParser
        from awscli.clidriver import create_clidriver

        driver = create_clidriver()
        table = driver._get_command_table()
        top, rest = driver._create_parser(table).parse_known_args(self.argv)
        if not rest:
            raise StepError("no operation")
        service = table[top.command]
        if top.command != "configure" and top.region != self.region:
            self.fail(f'--region is {top.region!r}, not "$AWS_REGION" ({self.region!r})')
        op_name = rest[0]
        ops = service.subcommand_table if top.command == "configure" else service._get_command_table()
        if op_name not in ops:
            raise StepError(f"aws {top.command} has no command {op_name}")
        args, unknown = ArgTableArgParser(ops[op_name].arg_table).parse_known_args(rest[1:])
        if unknown and top.command != "configure":
            raise StepError(f"unknown arguments {unknown}")
        handler = getattr(self, f"aws_{top.command}_{op_name}".replace("-", "_"), None)
        if handler is None:
            raise StepError("unknown step: add it to the rehearsal")
        return int(handler(top, args) or 0)

    def print_query(self, top: argparse.Namespace, response: dict[str, Any]) -> None:
        import jmespath

        value = jmespath.search(top.query, response) if top.query else response
        if value in (None, "", []):
            raise StepError(f"--query {top.query} finds nothing")
        if top.output != "text":
            raise StepError("the block reads values with --output text")
        print("\t".join(map(str, value)) if isinstance(value, list) else value)

    def aws_cloudformation_deploy(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        from resnet_serving.naming import STACKS

        name, path = args.stack_name, Path(args.template_file)
        if name not in STACKS.values():
            raise StepError(f"stack {name} is none of resnet_serving.naming.STACKS: {sorted(STACKS.values())}")
        if path != Path("infra/templates") / f"{name}.json" or not path.is_file():
            raise StepError(f"--template-file {path}: stack {name}'s template is infra/templates/{name}.json")
        body = json.loads(path.read_text())
        params = body.get("Parameters", {})
        given = dict(p.split("=", 1) for p in args.parameter_overrides or [])
        unknown = sorted(set(given) - set(params))
        missing = sorted(p for p, spec in params.items() if "Default" not in spec and p not in given)
        if unknown or missing:
            raise StepError(f"{name}: parameters not in the template {unknown}, required and not given {missing}")
        empty = sorted(p for p, v in given.items() if not v or PLACEHOLDER.match(v))
        if empty:
            raise StepError(f"{name}: parameters given no value {empty}")
        types = {r["Type"] for r in body.get("Resources", {}).values()}
        named = any(
            r["Type"].startswith("AWS::IAM::") and any(k in r.get("Properties", {}) for k in ("RoleName", "PolicyName"))
            for r in body.get("Resources", {}).values()
            if r["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy")
        )
        needs = (
            "CAPABILITY_NAMED_IAM"
            if named
            else "CAPABILITY_IAM"
            if any(t.startswith("AWS::IAM::") for t in types)
            else None
        )
        caps = set(args.capabilities or [])
        if needs and needs not in caps and not (needs == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in caps):
            raise StepError(f"{name} makes IAM resources: --capabilities {needs}")
        if not needs and caps:
            raise StepError(f"{name} makes no IAM resource: --capabilities {sorted(caps)} is not needed")
        if name == "resnet-serving-observability":
            self.make_alarms(body, given)
        self.state["deployed"].append(name)
        self.notes.append(f"parameters {sorted(given)}")

    def make_alarms(self, body: dict[str, Any], given: dict[str, str]) -> None:
        """The observability stack's alarms, made in moto as the stack makes them, so deploy finds them."""
        import boto3

        from tests.helpers import iam_eval

        t = iam_eval.Template(body, name="resnet-serving-observability.json", parameters=given)
        if not self.region:
            return  # checked above: the block set no region
        cw = boto3.client("cloudwatch", endpoint_url=self.state["moto"], region_name=self.region)
        for lid, r in t.resources.items():
            if r["Type"] == "AWS::CloudWatch::Alarm":
                alarm = str(t.resolve(r["Properties"]["AlarmName"]))
                cw.put_metric_alarm(
                    AlarmName=alarm, MetricName="Invocations", Namespace="AWS/SageMaker", Statistic="Sum",
                    Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                )  # fmt: skip
                self.notes.append(f"alarm {alarm} ({lid})")

    def aws_cloudformation_describe_stacks(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        name = args.stack_name
        if name == CLUSTER_STACK:
            if not self.state["cluster"]:
                raise StepError(f"{name} is eksctl's stack: create the cluster first")
        elif name not in self.state["deployed"] or name in self.state["deleted"]:
            raise StepError(f"out {name}: that stack is not deployed at this point of the block")
        profile = os.environ.get("AWS_PROFILE")
        if profile:
            raise StepError(
                f"out {name} runs as AWS_PROFILE={profile}, whose role may not cloudformation:DescribeStacks "
                "(read the outputs before export AWS_PROFILE)"
            )
        outputs = self.state["outputs"].get(name, {})
        response = {
            "Stacks": [{"StackName": name, "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]
        }
        wanted = re.findall(r"OutputKey=='(\w+)'", top.query or "")
        if wanted and wanted[0] not in outputs:
            raise StepError(f"stack {name}'s template has no output {wanted[0]} (it has {sorted(outputs)})")
        self.print_query(top, response)

    def aws_cloudformation_delete_stack(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        if args.stack_name not in self.state["deployed"]:
            raise StepError(f"{args.stack_name} was never deployed")
        self.state["deleted"].append(args.stack_name)

    def aws_eks_describe_cluster(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        cluster = self.state["cluster"]
        if not cluster or args.name != cluster:
            raise StepError(f"cluster {args.name} is not the one eksctl created ({cluster})")
        issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        self.print_query(
            top,
            {
                "cluster": {
                    "name": cluster,
                    "identity": {"oidc": {"issuer": issuer}},
                    "resourcesVpcConfig": {"vpcId": "vpc-0example"},
                }
            },
        )

    def aws_ec2_describe_vpcs(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        if args.vpc_ids != ["vpc-0example"]:
            raise StepError(f"--vpc-ids {args.vpc_ids}: not the cluster's VPC")
        self.print_query(top, {"Vpcs": [{"VpcId": "vpc-0example", "CidrBlock": "192.168.0.0/16"}]})

    def aws_ec2_describe_route_tables(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        self.print_query(top, {"RouteTables": [{"RouteTableId": f"rtb-0{z}"} for z in "abc"]})

    def aws_sns_list_subscriptions_by_topic(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        if args.topic_arn != self.state["outputs"]["resnet-serving-observability"]["AlertTopicArn"]:
            raise StepError(f"--topic-arn {args.topic_arn} is not the observability stack's AlertTopicArn")
        self.print_query(top, {"Subscriptions": [{"SubscriptionArn": "PendingConfirmation"}]})

    def aws_cognito_idp_describe_user_pool_client(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        front = self.state["outputs"]["resnet-serving-frontdoor"]
        if (args.user_pool_id, args.client_id) != (front["UserPoolId"], front["MachineClientId"]):
            raise StepError("not the front door's user pool and machine client")
        self.print_query(top, {"UserPoolClient": {"ClientId": args.client_id, "ClientSecret": "example-client-secret"}})

    def aws_apigateway_get_api_key(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        if args.api_key != self.state["outputs"]["resnet-serving-frontdoor"]["ApiKeyId"]:
            raise StepError(f"--api-key {args.api_key} is not the front door's ApiKeyId")
        if not args.include_value:
            raise StepError("--include-value is needed for the key's value")
        self.print_query(top, {"id": args.api_key, "value": "example-api-key-value"})

    def aws_configure_set(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        key = self.argv[2] if len(self.argv) > 2 else ""
        m = re.fullmatch(r"profile\.([\w-]+)\.(role_arn|source_profile|region)", key)
        if not m:
            raise StepError(f"configure set {self.argv[2:]}: only a profile's role_arn, source_profile and region")
        if m.group(2) == "region" and self.argv[3] != self.region:
            raise StepError(f"profile {m.group(1)}: region {self.argv[3]} is not $AWS_REGION ({self.region})")
        if m.group(2) == "role_arn" and not re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", self.argv[3]):
            raise StepError(f"role_arn {self.argv[3]!r} is not a role ARN")
        self.real([str(Path(sys.executable).parent / "aws"), *self.argv])

    def aws_ecr_get_login_password(self, top: argparse.Namespace, args: argparse.Namespace) -> None:
        self.real([str(Path(sys.executable).parent / "aws"), *self.argv])

    # -- eksctl ----------------------------------------------------------------------------------------------------
    def tool_eksctl(self) -> int:
        p = argparse.ArgumentParser(prog="eksctl", exit_on_error=False)
        p.add_argument("verb", choices=["create", "delete"])
        p.add_argument("noun", choices=["cluster"])
        p.add_argument("-f", "--config-file", required=True)
        p.add_argument("--wait", action="store_true")
        try:
            args = p.parse_args(self.argv)
        except (argparse.ArgumentError, SystemExit) as e:
            raise StepError(f"eksctl arguments: {e}") from None
        path = Path(args.config_file)
        if not path.is_file():
            raise StepError(f"{path} does not exist")
        config = yaml.safe_load(path.read_text())
        meta = config["metadata"]
        if meta.get("region") != self.region:
            self.fail(f"{path}: metadata.region {meta.get('region')} is not $AWS_REGION ({self.region})")
        zones = config.get("availabilityZones", [])
        if any(not z.startswith(self.region) for z in zones):
            raise StepError(f"{path}: availabilityZones {zones} are not all in {self.region}")
        if args.verb == "create":
            self.state["cluster"] = meta["name"]
        else:
            if self.state["cluster"] != meta["name"]:
                raise StepError(f"deletes cluster {meta['name']}, created {self.state['cluster']}")
            undeleted = [s for s in self.state["deployed"] if s not in self.state["deleted"]]
            if undeleted:
                raise StepError(f"the cluster goes before the stacks that use it: {undeleted}")
        return 0

    # -- helm ------------------------------------------------------------------------------------------------------
    def tool_helm(self) -> int:
        verb = self.argv[0] if self.argv else ""
        if verb == "repo":
            sub, *rest = self.argv[1:]
            if sub == "add" and len(rest) == 2:
                if HELM_REPOS.get(rest[0]) != rest[1]:
                    raise StepError(f"helm repo add {rest}: the rehearsal knows {HELM_REPOS}: add it to the rehearsal")
                self.state["repos"].append(rest[0])
                return 0
            if sub == "update" and rest and all(r in self.state["repos"] for r in rest):
                return 0
            raise StepError(f"helm repo {sub} {rest}: add a repository before updating it")
        if verb in ("install", "upgrade") and len(self.argv) >= 3:
            release, chart = self.argv[1], self.argv[2]
            if chart == CHART:
                return self.helm_template(verb, release)
            return self.third_party_chart(release, chart)
        if verb == "test":
            return self.helm_test()
        if verb == "uninstall":
            if self.argv[1] not in self.state["releases"]:
                raise StepError(f"{self.argv[1]} was never installed")
            return 0
        raise StepError("unknown step: add it to the rehearsal")

    def helm_args(self, argv: list[str]) -> argparse.Namespace:
        """The flags of `helm install|upgrade` the block uses; any other fails, so none goes unchecked."""
        p = argparse.ArgumentParser(prog="helm", exit_on_error=False, add_help=False)
        p.add_argument("-n", "--namespace", required=True)
        p.add_argument("--create-namespace", action="store_true")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--set-string", action="append", default=[])
        p.add_argument("--reuse-values", action="store_true")
        p.add_argument("--wait", action="store_true")
        try:
            args, extra = p.parse_known_args(argv)
        except argparse.ArgumentError as e:
            raise StepError(str(e)) from None
        if extra:
            raise StepError(f"flags the rehearsal does not know: {extra}")
        return args

    def third_party_chart(self, release: str, chart: str) -> int:
        """A chart from a repository the block added, which nothing here can install: held to the eksctl config,
        the cluster, the region and the project's chart; what it adds to the cluster's APIs is recorded."""
        self.unverified = True
        repo = chart.split("/", 1)[0]
        if repo not in self.state["repos"]:
            raise StepError(f"chart {chart}: `helm repo add {repo} …` must come first")
        if self.argv[0] != "install":
            raise StepError(f"helm {self.argv[0]} {chart}: unknown step: add it to the rehearsal")
        args = self.helm_args(self.argv[3:])
        sets = dict(s.split("=", 1) for s in args.set)
        check = getattr(self, "chart_" + chart.split("/", 1)[1].replace("-", "_"), None)
        if check is None:
            raise StepError(f"chart {chart}: unknown step: add it to the rehearsal")
        check(release, args, sets)
        self.state["releases"].append(release)
        self.state["installed"][chart] = {"release": release, "namespace": args.namespace}
        self.state["apis"] += CHART_APIS.get(chart, [])
        return 0

    def eksctl_service_account(self, name: str, namespace: str, policy: str) -> None:
        """The controller runs as a ServiceAccount eksctl made, with the IAM policy it needs (IRSA)."""
        config = yaml.safe_load(EKSCTL_CONFIG.read_text())
        accounts = {
            (a["metadata"]["name"], a["metadata"].get("namespace", "default")): a
            for a in config.get("iam", {}).get("serviceAccounts", [])
        }
        account = accounts.get((name, namespace))
        if account is None:
            raise StepError(f"ServiceAccount {namespace}/{name} is none of {EKSCTL_CONFIG.name}'s: {sorted(accounts)}")
        if not account.get("wellKnownPolicies", {}).get(policy):
            raise StepError(f"{EKSCTL_CONFIG.name}: ServiceAccount {name} lacks wellKnownPolicies.{policy}")

    def chart_aws_load_balancer_controller(self, release: str, args: argparse.Namespace, sets: dict[str, str]) -> None:
        if args.namespace != "kube-system" or sets.get("clusterName") != self.state["cluster"]:
            raise StepError(f"clusterName is not the cluster eksctl created ({self.state['cluster']}), in kube-system")
        if sets.get("serviceAccount.create") != "false":
            raise StepError("serviceAccount.create=false: eksctl made the ServiceAccount and its IAM role")
        self.eksctl_service_account(sets.get("serviceAccount.name", ""), args.namespace, "awsLoadBalancerController")
        if sets.get("region") != self.region or sets.get("vpcId") != "vpc-0example":
            raise StepError("region is not $AWS_REGION or vpcId not the cluster's VPC")

    def chart_cluster_autoscaler(self, release: str, args: argparse.Namespace, sets: dict[str, str]) -> None:
        cluster = self.state["cluster"]
        if args.namespace != "kube-system" or sets.get("autoDiscovery.clusterName") != cluster:
            raise StepError(f"autoDiscovery.clusterName is not the cluster eksctl created ({cluster}), in kube-system")
        if sets.get("rbac.serviceAccount.create") != "false":
            raise StepError("rbac.serviceAccount.create=false: eksctl made the ServiceAccount and its IAM role")
        self.eksctl_service_account(sets.get("rbac.serviceAccount.name", ""), args.namespace, "autoScaler")
        if sets.get("awsRegion") != self.region:
            raise StepError(f"awsRegion {sets.get('awsRegion')!r} is not $AWS_REGION ({self.region})")
        if sets.get("extraArgs.balance-similar-node-groups") != "true":
            raise StepError("extraArgs.balance-similar-node-groups=true: one node group per zone, kept even")
        # auto-discovery finds the Auto Scaling groups by these tags, which eksctl copies only with propagateASGTags
        wanted = {"k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{cluster}"}
        for group in yaml.safe_load(EKSCTL_CONFIG.read_text()).get("managedNodeGroups", []):
            if not wanted <= set(group.get("tags", {})) or not group.get("propagateASGTags"):
                raise StepError(f"node group {group['name']}: no auto-discovery tags {sorted(wanted)} on its ASG")

    def chart_kube_prometheus_stack(self, release: str, args: argparse.Namespace, sets: dict[str, str]) -> None:
        if not args.create_namespace:
            raise StepError(f"namespace {args.namespace}: nothing created it (--create-namespace)")

    def chart_prometheus_adapter(self, release: str, args: argparse.Namespace, sets: dict[str, str]) -> None:
        kps = self.state["installed"].get("prometheus-community/kube-prometheus-stack")
        if kps is None:
            raise StepError("prometheus-adapter before kube-prometheus-stack: no Prometheus to query")
        url = f"http://{kps['release']}-prometheus.{kps['namespace']}.svc"
        if (sets.get("prometheus.url"), sets.get("prometheus.port")) != (url, "9090"):
            given = f"{sets.get('prometheus.url')}:{sets.get('prometheus.port')}"
            raise StepError(f"prometheus.url:port {given}: not kube-prometheus-stack's Prometheus {url}:9090")
        if len(args.values) != 1 or not Path(args.values[0]).is_file():
            raise StepError(f"-f {args.values}: the adapter rule file the block wrote")
        given = yaml.safe_load(Path(args.values[0]).read_text())
        if given != yaml.safe_load(self.adapter_rule()):
            raise StepError(f"-f {args.values[0]} is not the chart's {ADAPTER_CONFIGMAP} {ADAPTER_KEY}")
        self.state["adapter_metrics"] = [r["name"]["as"] for r in given["rules"]["custom"]]

    def rendered(self) -> list[dict[str, Any]]:
        path = self.dir / "rendered.yaml"
        if not path.is_file():
            raise StepError(f"the chart ({RELEASE}) is not installed at this point of the block")
        return [d for d in yaml.safe_load_all(path.read_text()) if d]

    def adapter_rule(self, key: str = ADAPTER_KEY) -> str:
        """The ConfigMap's data the page reads, from the chart as the block last rendered it (NotFound if absent)."""
        for d in self.rendered():
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ADAPTER_CONFIGMAP:
                if key not in d.get("data", {}):
                    raise StepError(f"ConfigMap {ADAPTER_CONFIGMAP} has no key {key}: {sorted(d['data'])}")
                return str(d["data"][key])
        raise StepError(f'configmaps "{ADAPTER_CONFIGMAP}" not found in the chart\'s render')

    def helm_template(self, verb: str, release: str) -> int:
        """`helm install|upgrade` of the project's chart, run as `helm template` with the same flags for the APIs the
        cluster serves at that point (a fresh cluster's, plus what the block's charts added), its objects kept for the
        test to validate. An upgrade with --reuse-values starts from the install's flags, as Helm's stored values."""
        if release != RELEASE:
            raise StepError(f"release {release}: the chart's IRSA trust names {RELEASE}")
        args = self.helm_args(self.argv[3:])
        if args.namespace != NAMESPACE:
            raise StepError(f"namespace {args.namespace}: the roles stack trusts {NAMESPACE}")
        values: list[str] = []
        if verb == "upgrade":
            if release not in self.state["releases"]:
                raise StepError(f"helm upgrade {release}: not installed")
            if args.reuse_values:
                values = list(self.state["chart_values"])
        elif args.reuse_values:
            raise StepError("helm install --reuse-values: nothing to reuse")
        values += [a for v in args.values for a in ("-f", v)]
        values += [a for s in args.set for a in ("--set", s)]
        values += [a for s in args.set_string for a in ("--set-string", s)]
        helm = os.environ.get("HELM") or str(REPO / ".tools" / "bin" / "helm")
        cmd = [
            helm,
            "template",
            release,
            str(REPO / CHART),
            "--namespace",
            args.namespace,
            "--kube-version",
            KUBE_VERSION,
        ]
        cmd += [a for api in self.state["apis"] for a in ("--api-versions", api)]
        cmd += values  # -f paths as the block gives them: this runs in the block's working directory
        self.status = "ran"
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        if proc.returncode != 0:
            raise StepError(f"helm template failed: {proc.stderr.strip()[-1500:]}")
        # rendered.yaml: the release as it stands, which later steps read; rendered-VERB.yaml: each render, for the test
        (self.dir / f"rendered-{verb}.yaml").write_text(proc.stdout)
        (self.dir / "rendered.yaml").write_text(proc.stdout)
        (self.dir / f"helm-template-{verb}.json").write_text(json.dumps(cmd))
        if verb == "install":
            self.state["releases"].append(release)
            self.state["release_namespace"] = args.namespace
            self.state["chart_values"] = values
            if not self.state["apis"]:  # `helm install --dry-run=client` has a fresh cluster's APIs and prints notes
                dry = [helm, "install", release, str(REPO / CHART), "--namespace", args.namespace, *values]
                notes = subprocess.run(
                    [*dry, "--dry-run=client"], capture_output=True, text=True, timeout=180, check=False
                )
                if notes.returncode != 0 or "NOTES:" not in notes.stdout:
                    raise StepError(f"helm install --dry-run=client failed: {notes.stderr.strip()[-1500:]}")
                (self.dir / "notes.txt").write_text(notes.stdout.split("NOTES:", 1)[1])
        self.check_served(yaml.safe_load_all(proc.stdout))
        return 0

    def check_served(self, objects: Any) -> None:
        """What the block installed is used: each API the cluster serves renders its objects, wired to the releases
        that serve them (the selector label, the scraping namespace, the adapter's metric)."""
        docs = [d for d in objects if d]
        kinds = {d["kind"] for d in docs}
        kps = self.state["installed"].get("prometheus-community/kube-prometheus-stack")
        if kps:
            missing = {"ServiceMonitor", "PrometheusRule"} - kinds
            if missing:
                raise StepError(f"kube-prometheus-stack is installed, and the chart renders no {sorted(missing)}")
            for d in docs:
                if d["kind"] in ("ServiceMonitor", "PrometheusRule"):
                    label = d["metadata"].get("labels", {}).get("release")
                    if label != kps["release"]:
                        what = f"{d['kind']} {d['metadata']['name']}: label release={label}, not {kps['release']}"
                        raise StepError(f"{what}: kube-prometheus-stack's Prometheus selects only its own")
            scrapers = {
                f.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                for d in docs
                if d["kind"] == "NetworkPolicy"
                for rule in d["spec"].get("ingress", [])
                for f in rule.get("from", [])
            }
            if kps["namespace"] not in scrapers:
                raise StepError(f"no NetworkPolicy lets namespace {kps['namespace']} (Prometheus) scrape: {scrapers}")
        if CUSTOM_METRICS_API in self.state["apis"]:
            pods = [
                m["pods"]["metric"]["name"]
                for d in docs
                if d["kind"] == "HorizontalPodAutoscaler"
                for m in d["spec"]["metrics"]
                if m["type"] == "Pods"
            ]
            if not pods or not set(pods) <= set(self.state.get("adapter_metrics", [])):
                raise StepError(f"the HPA's Pods metrics {pods} are not all served by the adapter's rule "
                                f"{self.state.get('adapter_metrics')}")  # fmt: skip

    def helm_test(self) -> int:
        """`helm test`: a test hook pod the chart renders, run after the rollout, for the release as installed."""
        self.unverified = True
        p = argparse.ArgumentParser(prog="helm test", exit_on_error=False, add_help=False)
        p.add_argument("release")
        p.add_argument("-n", "--namespace", required=True)
        try:
            args, extra = p.parse_known_args(self.argv[1:])
        except argparse.ArgumentError as e:
            raise StepError(str(e)) from None
        if extra:
            raise StepError(f"flags the rehearsal does not know: {extra}")
        if (args.release, args.namespace) != (RELEASE, self.state.get("release_namespace")):
            raise StepError(f"helm test {args.release} -n {args.namespace}: not the release the block installed")
        if not self.state["rolled_out"]:
            raise StepError("helm test before `kubectl rollout status`: the test pod would find no ready pod")
        docs = self.rendered()
        tests = [
            d for d in docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"
        ]
        if not tests:
            raise StepError("the chart renders no test hook pod (helm.sh/hook: test): helm test runs nothing")
        services = {
            f"http://{d['metadata']['name']}.{d['metadata']['namespace']}.svc:{port['port']}"
            for d in docs
            if d["kind"] == "Service"
            for port in d["spec"]["ports"]
        }
        from resnet_serving.cli import build_parser

        for pod in tests:
            for c in pod["spec"]["containers"]:
                if c.get("command") != ["resnet-serving"]:
                    raise StepError(f"test pod {pod['metadata']['name']}: command {c.get('command')}")
                try:
                    parsed = build_parser().parse_args(c.get("args", []))
                except SystemExit:
                    raise StepError(f"test pod: resnet-serving {c.get('args')} does not parse") from None
                if getattr(parsed, "url", None) not in services:
                    raise StepError(f"test pod: --url {getattr(parsed, 'url', None)} is none of {sorted(services)}")
                self.notes.append(f"{pod['metadata']['name']}: resnet-serving {' '.join(c['args'])}")
        return 0

    # -- kubectl ---------------------------------------------------------------------------------------------------
    def tool_kubectl(self) -> int:
        a = self.argv
        self.unverified = True
        if a[:2] == ["create", "namespace"] and a[2:] == [NAMESPACE]:
            return 0
        if a[:2] == ["label", "namespace"] and a[2:] == [NAMESPACE, "elbv2.k8s.aws/pod-readiness-gate-inject=enabled"]:
            return 0
        if a[:4] == ["-n", NAMESPACE, "rollout", "status"] and len(a) >= 5:
            names = {f"deployment/{d['metadata']['name']}" for d in self.rendered() if d["kind"] == "Deployment"}
            if a[4] not in names or not any(x.startswith("--timeout=") for x in a[5:]):
                raise StepError(f"rollout status {a[4:]}: one of {sorted(names)}, with a --timeout")
            self.state["rolled_out"] = True
            return 0
        key = re.fullmatch(r"jsonpath=\{\.data\.((?:[\w-]|\\\.)+)\}", a[6]) if len(a) == 7 else None
        if a[:4] == ["-n", NAMESPACE, "get", "configmap"] and a[5] == "-o" and key:
            if a[4] != ADAPTER_CONFIGMAP:
                raise StepError(f'configmaps "{a[4]}" not found: the chart names the adapter rule {ADAPTER_CONFIGMAP}')
            sys.stdout.write(self.adapter_rule(key.group(1).replace("\\.", ".")))
            return 0
        raise StepError("unknown step: add it to the rehearsal")

    # -- images ----------------------------------------------------------------------------------------------------
    def tool_make(self) -> int:
        if self.argv != ["images"]:
            raise StepError("unknown step: add it to the rehearsal")
        if self.state["real_docker"]:
            self.status = "ran"
            self.notes.append("built by the image tests' `built` fixture (docker/build.sh, what `make images` runs)")
        return 0

    def tool_docker(self) -> int:
        """docker login, tag, push and image inspect: held to the store's repository and to one another (the
        reference tagged is the one pushed and inspected). Not run: moto's ECR has no registry endpoint."""
        repo = self.state["outputs"]["resnet-serving-store"].get("ServingRepositoryUri", "")
        images = self.state["images"]
        a = self.argv
        if a[:1] == ["login"]:
            if a[1:4] != ["--username", "AWS", "--password-stdin"] or a[4] != repo.split("/", 1)[0]:
                raise StepError(f"docker login {a[1:]}: AWS with the password on stdin, to the repository's registry")
            if not sys.stdin.read().strip():
                raise StepError("docker login: no password on stdin")
            return 0
        if a[:1] == ["tag"]:
            from resnet_serving import __version__

            if a[1] != f"resnet-serving:{__version__}" or a[2] != f"{repo}:{__version__}":
                raise StepError(f"docker tag {a[1:]}: the serving image `make images` builds, to {repo}:{__version__}")
            images["tagged"] = a[2]
        elif a[:1] == ["push"]:
            if a[1:] != [images.get("tagged")]:
                raise StepError(f"docker push {a[1:]}: not the reference tagged ({images.get('tagged')})")
            images["pushed"] = a[1]
        elif a[:2] == ["image", "inspect"]:
            if len(a) != 5 or a[2] != "--format" or a[4] != images.get("pushed"):
                raise StepError(f"docker image inspect {a[2:]}: --format, of the pushed {images.get('pushed')}")
            if not self.state["real_docker"]:
                return self.inspect_digests(a[3], a[4])
        else:
            raise StepError("unknown step: add it to the rehearsal")
        if self.state["real_docker"]:
            return self.real(["docker", *a], env={**os.environ, "PATH": "/usr/local/bin:/usr/bin:/bin"})
        return 0

    def inspect_digests(self, fmt: str, ref: str) -> int:
        """`docker image inspect --format` over RepoDigests, another registry's first: what the push gave $REPO is
        a digest of its own, so the test can tell which one reached the chart."""
        import hashlib

        repo = ref.rsplit(":", 1)[0]
        pushed = f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"
        self.state["images"]["digest"] = pushed.split("@", 1)[1]
        digests = [OTHER_REGISTRY_DIGEST, pushed]
        formats = {
            "{{index .RepoDigests 0}}": digests[0] + "\n",
            "{{range .RepoDigests}}{{println .}}{{end}}": "".join(d + "\n" for d in digests) + "\n",
            "{{json .RepoDigests}}": json.dumps(digests) + "\n",
        }
        if fmt not in formats:
            raise StepError(f"--format {fmt!r}: one the rehearsal knows {sorted(formats)}")
        sys.stdout.write(formats[fmt])
        return 0

    def tool_grep(self) -> int:
        """The real grep, on what the previous command printed."""
        return self.real(["/usr/bin/grep", *self.argv], stdin=sys.stdin.read())

    # -- the project, curl, python -----------------------------------------------------------------------------------
    def tool_resnet_serving(self) -> int:
        argv = list(self.argv)
        if argv[:1] == ["predict"]:
            return self.predict(argv)
        if argv[:1] == ["archive"] and "--weights" in argv:
            i = argv.index("--weights") + 1
            if argv[i] == "imagenet":
                argv[i] = "random"  # the imagenet weights are a download; no network here
                self.notes.append("--weights random for imagenet (no network)")
                self.state["random_weights"] = True
        if argv[:1] == ["push"] and self.state.get("random_weights"):
            argv.append("--allow-random-weights")  # what the archive step's substitution makes push require
            self.notes.append("--allow-random-weights (the archive has random weights)")
        if not self.region:
            self.fail("AWS_REGION is not set")
        exe = str(Path(sys.executable).parent / "resnet-serving")
        return self.real([exe, *argv])

    def predict(self, argv: list[str]) -> int:
        """The front door is API Gateway and Cognito, which nothing here runs: the line is parsed by the CLI's own
        parser and held to the front door's outputs."""
        from resnet_serving.cli import build_parser

        args = build_parser().parse_args(argv)
        front = self.state["outputs"].get("resnet-serving-frontdoor", {})
        want = (front.get("ApiUrl"), front.get("TokenUrl"), front.get("MachineClientId"), "example-api-key-value")
        if (args.url, args.token_url, args.client_id, args.api_key) != want:
            raise StepError(f"predict: --url, --token-url, --client-id, --api-key are not the front door's {want}")
        if os.environ.get("RESNET_SERVING_CLIENT_SECRET") != "example-client-secret" and not args.client_secret_file:
            raise StepError("predict: no client secret (RESNET_SERVING_CLIENT_SECRET or --client-secret-file)")
        return 0

    def tool_python(self) -> int:
        return self.real([sys.executable, *self.argv], stdin=sys.stdin.read() if not sys.stdin.isatty() else None)

    def tool_curl(self) -> int:
        urls = [a for a in self.argv if a.startswith(("http://", "https://"))]
        if len(urls) != 1 or not urls[0].startswith("https://"):
            raise StepError(f"curl {self.argv}: one https URL")
        url = urls[0]
        front = self.state["outputs"].get("resnet-serving-frontdoor", {})
        if "--fail" not in self.argv:
            raise StepError("curl without --fail exits 0 on an HTTP error")
        if url == front.get("TokenUrl"):
            if "grant_type=client_credentials" not in self.argv or "-u" not in self.argv:
                raise StepError("the token needs the client-credentials grant and the client id and secret")
            print(json.dumps({"access_token": "example-token", "token_type": "Bearer", "expires_in": 3600}))
            return 0
        for a in self.argv:
            if a.startswith("@") and (not a[1:] or PLACEHOLDER.match(a[1:])):
                raise StepError(f"{a}: no file to send")
        if url == front.get("ApiUrl"):
            headers = " ".join(self.argv)
            if (
                "Authorization: Bearer example-token" not in headers
                or "x-api-key: example-api-key-value" not in headers
            ):
                raise StepError("API Gateway needs the token (Authorization: Bearer) and the API key (x-api-key)")
            return 0
        if re.fullmatch(r"https://[^/]+/predictions/resnet50", url):
            return 0
        raise StepError(f"{url}: neither the front door's ApiUrl nor the ALB's /predictions/resnet50")


def main(argv: list[str]) -> int:
    tool, *args = argv
    return Stub(tool, args).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
