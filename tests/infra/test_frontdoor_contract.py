"""The front door's HTTP contract, on the synthesized template: what the client gets back for each status the
container (or SageMaker) answers, which headers reach the container, which bodies pass as bytes, and what the
WAF's rate rule counts.

API Gateway cannot run here. The mapping templates are therefore evaluated with airspeed (the Velocity engine
LocalStack uses to emulate API Gateway), with ``$input``, ``$util`` and ``$context`` stood in for as API Gateway
documents them; airspeed-ext is in the dev extra, so `make test` runs them; where it is missing, those cases skip and
the exact-text checks still run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers.infra import Synth, one, resources

from resnet_infra.config import load  # isort: skip

pytestmark = pytest.mark.cdk

CFG = load()

#: The account id a LogStreamArn carries, to prove it never reaches the client.
ACCOUNT = "123456789012"


def sagemaker_method(synth: Synth) -> dict[str, Any]:
    methods = resources(synth.templates["frontdoor"], "AWS::ApiGateway::Method").values()
    (method,) = [m["Properties"] for m in methods if m["Properties"]["Integration"]["Type"] == "AWS"]
    return method


def integration_response(synth: Synth, pattern: str) -> dict[str, Any]:
    (response,) = [
        r
        for r in sagemaker_method(synth)["Integration"]["IntegrationResponses"]
        if r.get("SelectionPattern") == pattern
    ]
    return response


def model_error(status: int, body: str) -> dict[str, Any]:
    """SageMaker's ModelError envelope (HTTP 424) around a container's answer, as InvokeEndpoint returns it."""
    return {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if status < 500 else "SERVER_ERROR_FROM_MODEL",
        "LogStreamArn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/resnet50",
        "Message": f'Received client error ({status}) from primary with message "{body}". See '
        f"https://eu-west-1.console.aws.amazon.com/cloudwatch/home in account {ACCOUNT} for more information.",
        "OriginalMessage": body,
        "OriginalStatusCode": status,
    }


# ---- a tiny stand-in for API Gateway's template context ---------------------------------------------------
class _Input:
    def __init__(self, body: dict[str, Any], params: dict[str, str]) -> None:
        self._body, self._params = body, params

    def path(self, expr: str) -> Any:
        assert expr.startswith("$.")
        return self._body.get(expr[2:])

    def params(self, name: str) -> str:
        return self._params.get(name, "")


class _Util:
    def parseJson(self, text: str) -> Any:
        return json.loads(text)

    def escapeJavaScript(self, text: str) -> str:
        return json.dumps(str(text))[1:-1]


def render(
    template: str, body: dict[str, Any], params: dict[str, str] | None = None
) -> tuple[Any, dict[str, str], str]:
    """(status override, header overrides, output) of one mapping template, as API Gateway would apply it."""
    airspeed = pytest.importorskip("airspeed")
    context: dict[str, Any] = {"requestId": "gw-req-1", "responseOverride": {"header": {}}}
    out = airspeed.Template(template).merge({"input": _Input(body, params or {}), "util": _Util(), "context": context})
    return context["responseOverride"].get("status"), context["responseOverride"]["header"], out


# ---- the container's statuses reach the client ---------------------------------------------------------------
def test_model_errors_are_mapped_by_a_template_on_sagemakers_424(synth: Synth) -> None:
    response = integration_response(synth, "424")
    template = response["ResponseTemplates"]["application/json"]
    assert "$input.path('$.OriginalStatusCode')" in template
    assert "$context.responseOverride.status" in template
    assert "$context.responseOverride.header.Retry-After" in template
    assert "$context.responseOverride.header.X-Request-Id" in template
    assert "LogStreamArn" not in template and "$input.body" not in template and "$input.json('$')" not in template


@pytest.mark.parametrize(
    ("status", "body", "retry_after"),
    [
        (503, {"error": "overloaded", "message": "the resnet50 queue is full: retry after 1 s", "status": 503}, "1"),
        (429, {"error": "too_many_requests", "message": "slow down", "status": 429}, "1"),
        (400, {"error": "bad_request", "message": "cannot decode image", "status": 400, "request_id": "r-7"}, None),
        (415, {"error": "unsupported_media_type", "message": "text/plain", "status": 415}, None),
        (413, {"error": "payload_too_large", "message": "too big", "status": 413}, None),
    ],
)
def test_the_containers_status_and_body_reach_the_client(
    synth: Synth, status: int, body: dict[str, Any], retry_after: str | None
) -> None:
    template = integration_response(synth, "424")["ResponseTemplates"]["application/json"]
    override, headers, out = render(template, model_error(status, json.dumps(body)), {"X-Request-Id": "client-1"})
    assert int(override) == status
    assert json.loads(out) == body
    assert ACCOUNT not in out and "LogStreamArn" not in out
    assert headers.get("Retry-After") == retry_after
    assert headers["X-Request-Id"] == body.get("request_id", "client-1")


def test_a_container_answer_not_in_our_format_becomes_our_format(synth: Synth) -> None:
    template = integration_response(synth, "424")["ResponseTemplates"]["application/json"]
    torchserve = json.dumps({"code": 500, "type": "InternalServerException", "message": "Worker died."})
    override, headers, out = render(template, model_error(500, torchserve))
    assert int(override) == 500
    body = json.loads(out)
    assert set(body) >= {"error", "message", "status"} and body["status"] == 500
    assert ACCOUNT not in out
    assert headers["X-Request-Id"] == "gw-req-1"


@pytest.mark.parametrize(("pattern", "status"), [("503", "503"), ("429", "429")])
def test_sagemakers_own_overload_stays_retryable_with_retry_after(synth: Synth, pattern: str, status: str) -> None:
    response = integration_response(synth, pattern)
    assert response["StatusCode"] == status
    override, headers, out = render(
        response["ResponseTemplates"]["application/json"],
        {"message": f"Endpoint resnet50 of account {ACCOUNT} is busy"},
    )
    body = json.loads(out)
    assert (body["status"], override) == (int(status), None) and body["error"] and body["message"]
    assert ACCOUNT not in out
    assert headers["Retry-After"] == "1" and headers["X-Request-Id"] == "gw-req-1"


def test_method_responses_declare_the_mapped_statuses_and_headers(synth: Synth) -> None:
    declared = {r["StatusCode"]: r.get("ResponseParameters", {}) for r in sagemaker_method(synth)["MethodResponses"]}
    assert {"200", "400", "413", "415", "429", "500", "502", "503", "504"} <= set(declared)
    for status in ("429", "503"):
        assert "method.response.header.Retry-After" in declared[status], status
    assert all("method.response.header.X-Request-Id" in params for params in declared.values()), declared
    ok = integration_response_default(synth)
    assert ok["ResponseParameters"]["method.response.header.X-Request-Id"] == (
        "integration.response.header.X-Amzn-SageMaker-Custom-Attributes"
    )


def integration_response_default(synth: Synth) -> dict[str, Any]:
    (ok,) = [r for r in sagemaker_method(synth)["Integration"]["IntegrationResponses"] if "SelectionPattern" not in r]
    assert ok["StatusCode"] == "200"
    return ok


def test_api_gateways_own_errors_use_our_body_and_throttling_says_when_to_retry(synth: Synth) -> None:
    t = synth.templates["frontdoor"]
    gateway = resources(t, "AWS::ApiGateway::GatewayResponse").values()
    responses = {r["ResponseType"]: r for r in (g["Properties"] for g in gateway)}
    for kind in ("THROTTLED", "QUOTA_EXCEEDED"):
        assert responses[kind]["StatusCode"] == "429"
        assert responses[kind]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    for kind, r in responses.items():
        body = r["ResponseTemplates"]["application/json"]
        assert '"error"' in body and "$context.error.messageString" in body and '"status"' in body, kind
        assert r["ResponseParameters"]["gatewayresponse.header.X-Request-Id"] == "method.request.header.X-Request-Id"
    assert {"UNSUPPORTED_MEDIA_TYPE", "REQUEST_TOO_LARGE", "INTEGRATION_TIMEOUT"} <= set(responses)


# ---- request forms and headers --------------------------------------------------------------------------------
def test_multipart_passes_as_bytes(synth: Synth) -> None:
    api = one(synth.templates["frontdoor"], "AWS::ApiGateway::RestApi")
    assert "multipart/form-data" in api["BinaryMediaTypes"]


def test_x_topk_and_x_request_id_reach_the_container(synth: Synth) -> None:
    method = sagemaker_method(synth)
    assert method["RequestParameters"]["method.request.header.X-TopK"] is False
    assert method["RequestParameters"]["method.request.header.X-Request-Id"] is False
    mapped = method["Integration"]["RequestParameters"]
    assert mapped["integration.request.header.X-Amzn-SageMaker-Custom-Attributes"] == "method.request.header.X-TopK"
    assert mapped["integration.request.header.X-Amzn-SageMaker-Inference-Id"] == "method.request.header.X-Request-Id"


# ---- WAF ------------------------------------------------------------------------------------------------------
def test_the_rate_rule_counts_per_api_key_sized_from_the_plan(synth: Synth) -> None:
    from resnet_infra.frontdoor import WAF_PLAN_FACTOR

    acl = one(synth.templates["frontdoor"], "AWS::WAFv2::WebACL")
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    statement = rate["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "CUSTOM_KEYS"
    header = {"Name": "x-api-key", "TextTransformations": [{"Priority": 0, "Type": "NONE"}]}
    assert statement["CustomKeys"] == [{"Header": header}]
    assert statement["Limit"] == int(CFG.api.throttle_rate * statement["EvaluationWindowSec"] * WAF_PLAN_FACTOR)
    assert CFG.api.waf_rate_limit_per_5min == statement["Limit"]
