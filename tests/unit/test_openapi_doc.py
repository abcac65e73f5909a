"""docs/openapi.yaml says what the code does: its limits, error codes and id rule are the code's own. (That real
answers match it is tests/integration/test_openapi_contract.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from resnet_serving import errors
from resnet_serving.inference import protocol
from resnet_serving.settings import Settings
from resnet_serving.torchserve import handler
from tests.helpers import REPO

SPEC: dict[str, Any] = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
SCHEMAS = SPEC["components"]["schemas"]


def test_limits_are_the_settings_defaults() -> None:
    settings = Settings()
    images = SCHEMAS["ImagesRequest"]["properties"]["images"]
    assert images["maxItems"] == settings.max_images_per_request
    assert SCHEMAS["ImagesRequest"]["properties"]["topk"]["maximum"] == settings.max_topk
    assert SPEC["components"]["parameters"]["X-TopK"]["schema"]["maximum"] == settings.max_topk
    assert SCHEMAS["Predictions"]["maxItems"] == settings.max_topk
    assert set(SCHEMAS["ImagesRequest"]["properties"]) == protocol.JSON_FIELDS


def test_error_codes_and_statuses_are_the_input_errors() -> None:
    kinds = [errors.InputError, errors.PayloadTooLarge, errors.UnsupportedMediaType]
    error = SCHEMAS["Error"]["allOf"][1]["properties"]
    assert error["error"]["enum"] == [k.code for k in kinds]
    assert error["status"]["enum"] == [k.http_status for k in kinds]
    responses = SPEC["paths"]["/predictions/resnet50"]["post"]["responses"]
    assert {"200", "400", "413", "415", "503"} == set(responses)
    assert SPEC["paths"]["/invocations"]["post"]["responses"] == responses


def test_the_request_id_rule_is_the_handlers() -> None:
    described = SPEC["components"]["parameters"]["X-Request-Id"]["description"]
    token = re.search(r"at most (\d+) characters \(`(\[[^`]+\])`\)", described)
    assert token, described
    assert handler._REQUEST_ID.pattern == f"^{token.group(2)}{{1,{token.group(1)}}}$"


@pytest.mark.parametrize("field", ["data", "file", "image", "body"])
def test_every_multipart_field_name_the_description_names_is_accepted(field: str) -> None:
    assert field in protocol.BODY_FIELDS
    assert f"`{field}`" in SPEC["components"]["requestBodies"]["Images"]["description"]


def test_a_malformed_x_topk_is_refused_even_when_the_json_topk_wins() -> None:
    """Found by schemathesis: `X-TopK: p` with a JSON body holding topk was ignored (200), now 400."""
    body = {"images": ["aGVsbG8="], "topk": 3}
    with pytest.raises(errors.InputError, match="topk must be an integer"):
        protocol.parse_request({"body": body}, "application/json", Settings(), {"x-topk": "p"})
    parsed = protocol.parse_request({"body": body}, "application/json", Settings(), {"x-topk": "7"})
    assert parsed.topk == 3  # a valid header still loses to the body's topk


def test_the_guards_503_is_the_overloaded_schema_with_retry_after() -> None:
    """The body serve's guard writes for a full queue validates against `Overloaded`, and nothing else it carries
    is left out of the schema; the 503 documents the Retry-After header the guard sets."""
    import json

    import jsonschema

    from resnet_serving.errors import Overloaded
    from resnet_serving.torchserve.guard import DEFAULT_RETRY_AFTER_S, overloaded_body

    schema = SCHEMAS["Overloaded"]
    body = json.loads(overloaded_body(DEFAULT_RETRY_AFTER_S, "resnet50"))
    jsonschema.validate(body, schema)
    assert set(body) == set(schema["properties"]) and schema["properties"]["error"]["enum"] == [Overloaded.code]
    unavailable = SPEC["components"]["responses"]["Unavailable"]
    assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert {"$ref": "#/components/schemas/Overloaded"} in unavailable["content"]["application/json"]["schema"]["oneOf"]


def test_the_guards_415_is_the_refused_schema_with_the_handlers_message() -> None:
    """The body serve's guard writes for a form-encoded request validates against `Refused`, carries nothing the
    schema leaves out, and is one of the 415's documented bodies; its message is the handler's for that type."""
    import json

    import jsonschema

    from resnet_serving.errors import UnsupportedMediaType
    from resnet_serving.inference import protocol
    from resnet_serving.torchserve.guard import refused_body

    body = json.loads(refused_body(protocol.form_urlencoded_refused(), "resnet50"))
    schema = SCHEMAS["Refused"]
    jsonschema.validate(body, schema)
    assert set(body) == set(schema["properties"])
    assert schema["properties"]["error"]["enum"] == [UnsupportedMediaType.code]
    with pytest.raises(UnsupportedMediaType) as handler:
        protocol.parse_request({"body": b"x"}, protocol.FORM_URLENCODED, Settings(), {})
    assert body["message"] == handler.value.message
    media = SPEC["components"]["responses"]["UnsupportedMediaType"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Refused"} in media["oneOf"]


def test_the_front_door_is_described_as_the_stack_builds_it() -> None:
    """The front door's server, security schemes and statuses, against infra/templates/resnet-serving-frontdoor.json:
    the scope the method requires, its API key, the stage, and every status its method and gateway responses
    can answer (each named in the description's status list)."""
    import json

    template = json.loads((REPO / "infra" / "templates" / "resnet-serving-frontdoor.json").read_text("utf-8"))
    config = json.loads((REPO / "infra" / "config.json").read_text("utf-8"))
    resources = template["Resources"].values()
    (method,) = [r["Properties"] for r in resources if r["Type"] == "AWS::ApiGateway::Method"]
    gateway = {r["Properties"]["StatusCode"] for r in resources if r["Type"] == "AWS::ApiGateway::GatewayResponse"}

    (server,) = [s for s in SPEC["servers"] if "execute-api" in s["url"]]
    assert server["url"].endswith("/{stage}") and server["variables"]["stage"]["default"] == config["api"]["stage"]
    schemes = SPEC["components"]["securitySchemes"]
    assert method["AuthorizationType"] == "COGNITO_USER_POOLS" and schemes["cognito"]["type"] == "oauth2"
    assert list(schemes["cognito"]["flows"]["clientCredentials"]["scopes"]) == method["AuthorizationScopes"]
    assert method["ApiKeyRequired"] is True
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "x-api-key")

    text = SPEC["info"]["description"]
    statuses = text[text.index("**The front door**") :]
    named = set(re.findall(r"\b([1-5]\d\d)\b", statuses))
    answered = {m["StatusCode"] for m in method["MethodResponses"]} | gateway
    assert answered - {"200"} <= named, f"the front door answers {sorted(answered - named)}, not described"
