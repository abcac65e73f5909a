"""A plan that prices what ships (issue #29): no Lambda hop the front door does not have, a line for every priced
thing the stacks create, a total per complete option, the shipped region and node types, provenance under the table
and in --json, a help text that says a bench file is needed, the front-door comparison, and GPU/Inferentia benches
priced only on their own accelerator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from resnet_serving.cli import main
from resnet_serving.plan import prices as prices_mod
from tests.helpers import REPO
from tests.helpers.plan import tiny_bench

BENCH = REPO / "tests" / "fixtures" / "bench-2vcpu.json"
SCENARIO = ["--users", "10000", "--think-time", "10", "--p99-ms", "500", "--bench", str(BENCH)]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["plan", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def plan_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> tuple[str, dict[str, Any]]:
    out_json = tmp_path / "plan.json"
    rc, out, err = run(capsys, *argv, "--json", str(out_json))
    assert rc == 0, err
    return out, json.loads(out_json.read_text())


def test_no_lambda_hop_the_front_door_does_not_have(capsys, tmp_path: Path) -> None:
    _, doc = plan_json(capsys, tmp_path, *SCENARIO)
    priced = [r["option"] for r in doc["rows"] if r["usd_month"] is not None]
    assert not [o for o in priced if "Lambda" in o], priced


def test_a_line_for_each_priced_thing_the_stacks_create(capsys, tmp_path: Path) -> None:
    _, doc = plan_json(capsys, tmp_path, *SCENARIO, "--region", "eu-west-1")
    options = {r["option"] for r in doc["rows"]}
    for needed in ("API Gateway (REST)", "WAF web ACL and requests", "WAF logs", "X-Ray traces", "NAT gateways",
                   "VPC interface endpoints", "KMS keys", "Cognito tokens", "API access logs"):  # fmt: skip
        assert needed in options, (needed, sorted(options))


def test_a_total_per_complete_option(capsys, tmp_path: Path) -> None:
    out, doc = plan_json(capsys, tmp_path, *SCENARIO, "--region", "eu-west-1", "--node-type", "c7i.2xlarge")
    assert "Total per complete option" in out
    lines = [r for r in doc["rows"] if r["kind"] == "line"]
    front = sum(r["usd_month"] for r in lines if r["scope"] == "front door")
    compute = [r for r in doc["rows"] if r["kind"] == "compute" and r["usd_month"] is not None]
    totals = {t["option"]: t for t in doc["totals"]}
    assert {r["option"] for r in compute} <= set(totals)
    for r in compute:
        path = "EKS" if r["option"].startswith("EKS") else "SageMaker"
        shared = sum(x["usd_month"] for x in lines if x["scope"] in ("all", path))
        t = totals[r["option"]]
        assert t["total"] == pytest.approx(r["usd_month"] + front + shared)
        assert (t["compute"], t["front_door"], t["shared"]) == pytest.approx((r["usd_month"], front, shared))
    eks = totals["EKS on-demand"]
    sagemaker = totals["SageMaker real-time ml.c5.2xlarge"]
    assert eks["shared"] > sagemaker["shared"], "EKS carries the NAT gateways and VPC endpoints"


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_the_shipped_region_and_node_types_are_priced(capsys, tmp_path: Path, region: str) -> None:
    for node in ("c7i.2xlarge", "c6i.2xlarge", "m7i.2xlarge", "m6i.2xlarge", "m5.2xlarge", "c5.2xlarge"):
        _, doc = plan_json(capsys, tmp_path, *SCENARIO, "--region", region, "--node-type", node)
        assert f"× {node}" in doc["rows"][0]["units"]
    _, doc = plan_json(capsys, tmp_path, *SCENARIO, "--region", region, "--instance-type", "ml.c7i.2xlarge")
    assert any(r["option"] == "SageMaker real-time ml.c7i.2xlarge" for r in doc["rows"])


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_the_price_list_covers_the_families_the_project_documents(region: str) -> None:
    p = prices_mod.load_prices(None, region)
    ec2, ml = p.instance_types("ec2_on_demand"), p.instance_types("sagemaker_realtime")
    for fam in ("c5", "c6i", "c7i", "m5", "m6i", "m7i", "g5", "g6", "inf2"):
        assert any(t.startswith(f"{fam}.") for t in ec2), (region, fam)
        assert any(t.startswith(f"ml.{fam}.") for t in ml), (region, fam)
    for t in ec2:
        e = p.entry("ec2_on_demand", t)
        assert bool(e.get("accelerator")) == t.startswith(("g5.", "g6.", "inf2.")), t


def test_provenance_under_the_table_and_in_json(capsys, tmp_path: Path) -> None:
    out, doc = plan_json(capsys, tmp_path, *SCENARIO, "--region", "eu-west-1")
    assert "Prices: eu-west-1 from the packaged prices.json" in out and "entered by hand" in out
    assert "https://aws.amazon.com/waf/pricing/" in out
    assert f"Bench: {BENCH}: device cpu, CPU Intel(R) Xeon(R) Processor, 2 vCPU(s)" in out
    assert "date not recorded in the bench file; payload grace_hopper.jpg, 61,306 B, 512×600" in out
    prov = doc["provenance"]
    waf = prov["prices"]["entries"]["waf"]
    assert waf["source"].startswith("https://aws.amazon.com/waf/pricing/") and waf["as_of"] == "2026-12-07"
    assert prov["prices"]["region"] == "eu-west-1" and "2026-12-07" in prov["prices"]["as_of"]
    assert prov["bench"]["cpu"] == "Intel(R) Xeon(R) Processor" and prov["bench"]["payload"]["bytes"] == 61306
    assert prov["bench"]["date"] is None and prov["bench"]["file"] == str(BENCH)
    assert all(e["source"] and e["as_of"] for e in prov["prices"]["entries"].values())


def test_help_says_a_bench_file_is_needed_and_where_one_is(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["plan", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "It needs a bench file" in out and "--bench tests/fixtures/bench-2vcpu.json" in out


def test_front_door_comparison_at_the_stated_load(capsys, tmp_path: Path) -> None:
    out, doc = plan_json(capsys, tmp_path, *SCENARIO, "--instance-type", "ml.c5.2xlarge")
    doors = {d["name"]: d for d in doc["front_doors"]}
    assert list(doors) == ["REST API (shipped)", "HTTP API", "ALB only"]
    assert doors["REST API (shipped)"]["usd_month"] > doors["HTTP API"]["usd_month"]
    assert doors["REST API (shipped)"]["usd_month"] > doors["ALB only"]["usd_month"]
    assert "Lambda" in doors["HTTP API"]["note"] and doors["ALB only"]["paths"] == "EKS only"
    rest = next(r for r in doc["rows"] if r["option"] == "API Gateway (REST)")["usd_month"]
    compute = next(r for r in doc["rows"] if r["option"] == "SageMaker real-time ml.c5.2xlarge")["usd_month"]
    assert 0.5 < rest / compute < 2, "at 1,000 req/s the REST API alone costs about as much as the compute"
    assert "Front door at 1000 requests/s" in out


def _bench_file(tmp_path: Path, device: str, vcpus: int = 4) -> Path:
    b = tiny_bench()
    b["environment"].update(device=device, cpus_available=vcpus)
    p = tmp_path / f"bench-{device.replace(' ', '-')}.json"
    p.write_text(json.dumps(b))
    return p


@pytest.mark.parametrize(
    ("device", "node", "ml"),
    [("NVIDIA A10G", "g5.xlarge", "ml.g5."), ("NVIDIA L4", "g6.xlarge", "ml.g6."),
     ("AWS Inferentia2", "inf2.xlarge", "ml.inf2.")],
)  # fmt: skip
def test_an_accelerator_bench_is_priced_on_its_own_accelerator(
    capsys, tmp_path: Path, device: str, node: str, ml: str
) -> None:
    bench = _bench_file(tmp_path, device)
    _, doc = plan_json(capsys, tmp_path, "--rps", "100", "--p99-ms", "1000", "--bench", str(bench))
    eks = doc["rows"][0]
    assert f"× {node} (1 pods/node)" in eks["units"]
    sm = [r for r in doc["rows"] if r["option"].startswith("SageMaker real-time")]
    assert sm and all(r["option"].startswith(f"SageMaker real-time {ml}") for r in sm)
    assert all("EXTRAPOLATED" not in r["note"] for r in sm)  # one chip = the bench host: nothing scaled
    serverless = next(r for r in doc["rows"] if r["option"] == "SageMaker serverless")
    assert serverless["units"] == "not possible" and "CPUs only" in serverless["note"]


@pytest.mark.parametrize(
    ("device", "argv"),
    [("cpu", ["--node-type", "g5.xlarge"]), ("cpu", ["--instance-type", "ml.inf2.xlarge"]),
     ("NVIDIA A10G", ["--node-type", "c7i.2xlarge"]), ("NVIDIA A10G", ["--instance-type", "ml.g6.xlarge"])],
)  # fmt: skip
def test_a_figure_is_never_scaled_across_hardware(capsys, tmp_path: Path, device: str, argv: list[str]) -> None:
    bench = _bench_file(tmp_path, device, 2)
    rc, _, err = run(capsys, "--rps", "100", "--p99-ms", "1000", "--bench", str(bench), *argv)
    assert rc == 2 and "never scales a figure measured on one to the other" in err and "Traceback" not in err


def _prices_with(tmp_path: Path, mutate: Any) -> Path:
    doc = json.loads(prices_mod._default_path().read_text(encoding="utf-8"))
    mutate(doc["regions"])
    p = tmp_path / "prices.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.update({"Ireland": r["eu-west-1"]}), "regions.Ireland: not an AWS region name"),
        (lambda r: r["eu-west-1"]["ec2_on_demand"].update({"big box": {}}), "ec2_on_demand.big box: not an instance"),
        (lambda r: r["eu-west-1"]["ec2_on_demand"]["c7i.2xlarge"].update(usd_per_hour=-0.4),
         "regions.eu-west-1.ec2_on_demand.c7i.2xlarge usd_per_hour is missing or not a positive number (got -0.4)"),
        (lambda r: r["eu-west-1"]["sagemaker_realtime"]["ml.c7i.2xlarge"].pop("usd_per_hour"),
         "regions.eu-west-1.sagemaker_realtime.ml.c7i.2xlarge usd_per_hour is missing"),
        (lambda r: r["eu-west-1"]["waf"].pop("source"), "regions.eu-west-1.waf has no source"),
        (lambda r: r["eu-west-1"]["nat_gateway"].update(as_of="2026-13-01"),
         "regions.eu-west-1.nat_gateway has no as_of"),
        (lambda r: r["eu-west-1"].pop("xray"), "regions.eu-west-1.xray is missing"),
        (lambda r: r["eu-west-1"]["ec2_on_demand"]["g5.xlarge"].pop("accelerators"),
         "regions.eu-west-1.ec2_on_demand.g5.xlarge accelerator must be a name"),
    ],
)  # fmt: skip
def test_a_bad_price_file_names_the_entry(capsys, tmp_path: Path, mutate: Any, needle: str) -> None:
    prices = _prices_with(tmp_path, mutate)
    rc, _, err = run(capsys, "--rps", "10", "--p99-ms", "1000", "--bench", str(BENCH), "--prices", str(prices))
    assert rc == 2 and needle in err and str(prices) in err and "Traceback" not in err, err
