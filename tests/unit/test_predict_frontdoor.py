"""``resnet-serving predict`` through the API Gateway front door: a Cognito token, an API key, and API Gateway's
own error answers.

No Cognito hosted domain or API Gateway can run here, and moto does not implement Cognito's OAuth2 token
endpoint, so a small HTTP server on loopback stands in for both (:class:`FrontDoor`). Its token endpoint
(``/oauth2/token``) checks HTTP Basic client id and secret and the client-credentials grant, and issues opaque
tokens with ``expires_in``; its route (``/prod/predictions/resnet50``, the shape of the stack's ``ApiUrl``)
answers like API Gateway in front of the model: 401 without a valid token, 403 ``Forbidden`` without the usage
plan's key, 403 ``Missing Authentication Token`` on any other path, 429 when told to throttle, 413 above its
body limit, else the JSON a real serve returns (built with the handler's own ``success_body``).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs

import pytest

from resnet_serving.cli import main
from resnet_serving.errors import ConfigError, Overloaded
from resnet_serving.inference.protocol import success_body
from resnet_serving.settings import ENV_API_KEY, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_SCOPE, ENV_TOKEN_URL
from resnet_serving.torchserve.client import (
    ClientCredentials,
    PredictClient,
    TokenSource,
    predictions_url,
    retry_after_s,
)
from tests.fixtures.http_server import CannedHandler, canned_server
from tests.fixtures.images import jpeg

CLIENT_ID = "4example0machine0client"
SECRET = "test-only-client-secret-0123456789"
API_KEY = "test-only-api-key-abcdefghijklmnop"
SCOPE = "resnet-serving/invoke"
ROUTE = "/prod/predictions/resnet50"
BODY_LIMIT = 200_000
PREDICTIONS = [
    {"label": "military uniform", "index": 652, "score": 0.8},
    {"label": "suit", "index": 834, "score": 0.1},
    {"label": "bow tie", "index": 457, "score": 0.05},
]


@dataclass
class FrontDoorState:
    """What the stand-in has issued and seen; tests set ``expires_in``, ``refusal_status`` and ``throttle``."""

    expires_in: int = 3600
    refusal_status: int = 400  # Cognito answers a wrong secret with 400 invalid_client; RFC 6749 allows 401
    valid_tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    api_requests: list[dict[str, str]] = field(default_factory=list)
    #: one entry per coming API request to answer 429: its Retry-After value, or None for no header
    throttle: list[str | None] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)


class FrontDoor(CannedHandler):
    state: ClassVar[FrontDoorState]
    body: bytes = b""
    retry_after: str | None = None

    def do_POST(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.rfile = io.BytesIO(self.body)  # CannedHandler reads the body again before answering
        self._reply()

    def extra_headers(self, status: int) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if status == 429 and self.retry_after is not None else {}

    def answer(self, method: str, path: str) -> tuple[int, bytes]:
        if method == "POST" and path == "/oauth2/token":
            return self._token()
        if method == "POST" and path == ROUTE:
            return self._predict()
        return 403, _json({"message": "Missing Authentication Token"})

    def _token(self) -> tuple[int, bytes]:
        form = parse_qs(self.body.decode())
        self.state.token_requests.append(form)
        user, _, password = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:]).decode().partition(":")
        if (user, password) != (CLIENT_ID, SECRET):
            return self.state.refusal_status, _json({"error": "invalid_client"})
        if form.get("grant_type") != ["client_credentials"]:
            return 400, _json({"error": "unsupported_grant_type"})
        if form.get("scope", [SCOPE]) != [SCOPE]:
            return 400, _json({"error": "invalid_scope"})
        token = f"token-{next(self.state.counter)}"
        self.state.valid_tokens.add(token)
        return 200, _json({"access_token": token, "expires_in": self.state.expires_in, "token_type": "Bearer"})

    def _predict(self) -> tuple[int, bytes]:
        self.state.api_requests.append(dict(self.headers))
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return 401, _json({"message": "Unauthorized"})
        if auth[7:] not in self.state.valid_tokens:
            return 401, _json({"message": "The incoming token has expired"})
        if self.headers.get("x-api-key") != API_KEY:
            return 403, _json({"message": "Forbidden"})
        if self.state.throttle:
            self.retry_after = self.state.throttle.pop(0)
            return 429, _json({"message": "Too Many Requests"})
        if len(self.body) > BODY_LIMIT:
            return 413, _json({"message": "Request Too Long"})
        topk = int(self.headers["X-Amzn-SageMaker-Custom-Attributes"].removeprefix("topk="))
        meta = {"model": "resnet50", "version": "3", "weights": "ResNet50_Weights.IMAGENET1K_V2"}
        return 200, _json(success_body([PREDICTIONS[:topk]], meta, multi=False))


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def door() -> Iterator[tuple[str, FrontDoorState]]:
    state = FrontDoorState()
    handler = type("FrontDoorForTest", (FrontDoor,), {"state": state})
    with canned_server(handler) as url:
        yield url, state


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_TOKEN_URL, ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_SCOPE, ENV_API_KEY):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for i in range(3):
        path = tmp_path / f"image-{i}.jpg"
        path.write_bytes(jpeg(64 + i, 48))
        paths.append(path)
    return paths


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "client-secret"
    path.write_text(SECRET + "\n")
    return path


def _argv(url: str, secret_file: Path, *more: str) -> list[str]:
    return [
        *("--url", url + ROUTE),
        *("--token-url", url + "/oauth2/token"),
        *("--client-id", CLIENT_ID),
        *("--client-secret-file", str(secret_file)),
        *more,
    ]


def _no_secrets(*outputs: str) -> None:
    for out in outputs:
        assert SECRET not in out and API_KEY not in out and "token-0" not in out


def test_one_token_serves_every_image(door, images, secret_file, monkeypatch, capsys) -> None:
    url, state = door
    monkeypatch.setenv(ENV_API_KEY, API_KEY)
    rc = main(["predict", *map(str, images), *_argv(url, secret_file, "--topk", "2", "--json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["status"] for a in answers] == [200, 200, 200]
    assert [p["label"] for p in answers[0]["response"]["predictions"]] == ["military uniform", "suit"]
    assert len(state.token_requests) == 1, "the token is fetched once and reused"
    assert state.token_requests[0] == {"grant_type": ["client_credentials"]}  # no --scope: the client's scopes
    assert len(state.api_requests) == 3
    assert {h["Authorization"] for h in state.api_requests} == {"Bearer token-0"}
    assert {h["x-api-key"] for h in state.api_requests} == {API_KEY}
    assert {h["Accept"] for h in state.api_requests} == {"application/json"}
    assert {h["Content-Type"] for h in state.api_requests} == {"image/jpeg"}
    _no_secrets(out, err)


def test_settings_from_the_environment_and_the_table(door, images, monkeypatch, capsys) -> None:
    url, state = door
    monkeypatch.setenv(ENV_TOKEN_URL, url + "/oauth2/token")
    monkeypatch.setenv(ENV_CLIENT_ID, CLIENT_ID)
    monkeypatch.setenv(ENV_CLIENT_SECRET, SECRET)
    monkeypatch.setenv(ENV_SCOPE, SCOPE)
    monkeypatch.setenv(ENV_API_KEY, API_KEY)
    rc = main(["predict", str(images[0]), "--url", url + ROUTE, "--topk", "3"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "military uniform" in out and "bow tie" in out
    assert state.token_requests[0]["scope"] == [SCOPE]
    _no_secrets(out, err)


@pytest.mark.parametrize("status", [400, 401])
def test_a_wrong_secret_says_the_token_endpoint_refused_it(door, images, tmp_path, status, capsys) -> None:
    url, state = door
    state.refusal_status = status
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret")
    rc = main(["predict", str(images[0]), *_argv(url, wrong, "--api-key", API_KEY)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"the token endpoint refused the client credentials (HTTP {status} invalid_client)" in err
    assert "MachineClientId" in err and "Traceback" not in err
    assert "not-the-secret" not in err
    assert state.api_requests == [], "no image is sent without a token"


def test_a_missing_api_key_is_named(door, images, secret_file, capsys) -> None:
    url, state = door
    rc = main(["predict", str(images[0]), *_argv(url, secret_file)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "answered 403 (Forbidden) and no API key was sent" in err
    assert ENV_API_KEY in err and "get-api-key" in err
    assert "x-api-key" not in state.api_requests[0]


def test_a_wrong_api_key_is_told_apart_from_a_missing_one(door, images, secret_file, capsys) -> None:
    url, _ = door
    rc = main(["predict", str(images[0]), *_argv(url, secret_file, "--api-key", "some-other-key")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "answered 403 (Forbidden) to the API key that was sent" in err and "usage plan" in err
    assert "some-other-key" not in err


def test_no_token_configured_says_what_the_api_wants(door, images, capsys) -> None:
    url, _ = door
    rc = main(["predict", str(images[0]), "--url", url + ROUTE, "--api-key", API_KEY])
    err = capsys.readouterr().err
    assert rc == 2
    assert "answered 401 (Unauthorized): it wants a Cognito token" in err and "--token-url" in err


def test_a_wrong_route_is_named(door, images, secret_file, capsys) -> None:
    url, _ = door
    argv = _argv(url, secret_file, "--api-key", API_KEY)
    argv[1] = url + "/predictions/resnet50"  # the stage is missing
    rc = main(["predict", str(images[0]), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert "403 Missing Authentication Token: API Gateway has no such route" in err and "ApiUrl" in err


def test_an_expired_token_is_fetched_again(door, images) -> None:
    """API Gateway says the token expired (revoked, or a clock ahead of ours): one new token, the same image."""
    url, state = door
    tokens = TokenSource(ClientCredentials(url + "/oauth2/token", CLIENT_ID, SECRET))
    client = PredictClient(url + ROUTE, tokens=tokens, api_key=API_KEY)
    data = images[0].read_bytes()
    assert client.predict(data, topk=1, content_type="image/jpeg").status == 200
    state.valid_tokens.clear()
    answer = client.predict(data, topk=1, content_type="image/jpeg")
    assert answer.status == 200 and answer.body["predictions"][0]["label"] == "military uniform"
    assert tokens.fetches == 2
    assert [h["Authorization"] for h in state.api_requests] == ["Bearer token-0", "Bearer token-0", "Bearer token-1"]


def test_a_token_refused_twice_stops_with_a_clear_error(door, images) -> None:
    url, state = door
    tokens = TokenSource(ClientCredentials(url + "/oauth2/token", CLIENT_ID, SECRET))
    tokens.token = lambda: "forged"  # type: ignore[method-assign]
    client = PredictClient(url + ROUTE, tokens=tokens, api_key=API_KEY)
    with pytest.raises(ConfigError, match=r"refused a new token too \(HTTP 401: The incoming token has expired\)"):
        client.predict(images[0].read_bytes(), topk=1, content_type="image/jpeg")
    assert len(state.api_requests) == 2


def test_tokens_are_renewed_shortly_before_they_expire(door) -> None:
    url, state = door
    state.expires_in = 3600
    now = [1000.0]
    tokens = TokenSource(ClientCredentials(url + "/oauth2/token", CLIENT_ID, SECRET), clock=lambda: now[0])
    assert tokens.token() == "token-0"
    now[0] += 3500
    assert tokens.token() == "token-0"
    now[0] += 41  # 59 s before expiry: inside the renewal margin
    assert tokens.token() == "token-1"
    assert tokens.fetches == 2
    state.expires_in = 10  # a short-lived token is renewed a tenth of its life early
    now[0] += 3600
    assert tokens.token() == "token-2"
    now[0] += 8.9
    assert tokens.token() == "token-2"
    now[0] += 0.2
    assert tokens.token() == "token-3"


def test_429_waits_as_retry_after_says(door, images) -> None:
    url, state = door
    state.throttle = ["2", "1"]
    waits: list[float] = []
    tokens = TokenSource(ClientCredentials(url + "/oauth2/token", CLIENT_ID, SECRET))
    client = PredictClient(url + ROUTE, tokens=tokens, api_key=API_KEY, sleep=waits.append)
    answer = client.predict(images[0].read_bytes(), topk=1, content_type="image/jpeg")
    assert answer.status == 200
    assert waits == [2.0, 1.0]
    assert len(state.api_requests) == 3 and tokens.fetches == 1


def test_429_without_retry_after_says_throttled(door, images, secret_file, capsys) -> None:
    url, state = door
    state.throttle = [None]
    rc = main(["predict", str(images[0]), *_argv(url, secret_file, "--api-key", API_KEY)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "throttled the request (HTTP 429: Too Many Requests)" in err and "rate limit" in err
    assert len(state.api_requests) == 1


def test_429_that_persists_stops_after_the_retries(door, images) -> None:
    url, state = door
    state.throttle = ["0"] * 10
    tokens = TokenSource(ClientCredentials(url + "/oauth2/token", CLIENT_ID, SECRET))
    client = PredictClient(url + ROUTE, tokens=tokens, api_key=API_KEY, sleep=lambda s: None)
    with pytest.raises(Overloaded, match=r"HTTP 429: Too Many Requests\) after 3 retries as Retry-After said"):
        client.predict(images[0].read_bytes(), topk=1, content_type="image/jpeg")
    assert len(state.api_requests) == 4


def test_a_body_over_the_limit_is_named_and_the_rest_still_run(door, images, secret_file, tmp_path, capsys) -> None:
    url, _ = door
    big = tmp_path / "big.jpg"
    big.write_bytes(jpeg(1200, 900, quality=100))
    assert big.stat().st_size > BODY_LIMIT
    rc = main(["predict", str(big), str(images[0]), *_argv(url, secret_file, "--api-key", API_KEY)])
    out, err = capsys.readouterr()
    err = " ".join(err.split())  # rich wraps the line at the console's width
    assert rc == 2
    assert f"HTTP 413: the request body ({big.stat().st_size} bytes) is over the server's limit" in err
    assert "Request Too Long" in err and "6 MB" in err
    assert "military uniform" in out, "the image under the limit is still classified"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--token-url", "https://x.example/oauth2/token"], "--token-url needs --client-id"),
        (["--token-url", "https://x.example/oauth2/token", "--client-id", "c"], "needs the app client's secret"),
        (["--client-id", "c"], "need --token-url"),
        (
            ["--token-url", "http://auth.example/oauth2/token", "--client-id", "c", "--client-secret-file", "S"],
            "the client secret would travel in clear text",
        ),
        (["--api-key", "k", "--url", "http://10.0.0.1/prod/predictions/resnet50"], "the API key would travel"),
        (["--token-url", "https://x.example/t", "--client-id", "c", "--client-secret-file", "/nonexistent"], "No such"),
    ],
)
def test_incomplete_or_unsafe_settings_are_refused_before_any_request(argv, says, images, tmp_path, capsys) -> None:
    (tmp_path / "S").write_text(SECRET)
    argv = [a if a != "S" else str(tmp_path / "S") for a in argv]
    assert main(["predict", str(images[0]), *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_the_secret_is_refused_on_the_command_line_and_never_echoed(images, capsys) -> None:
    assert main(["predict", str(images[0]), "--client-secret", SECRET]) == 2
    err = capsys.readouterr().err
    assert "--client-secret is not taken on the command line" in err and "--client-secret-file" in err
    assert SECRET not in err


def test_the_secret_stays_out_of_repr() -> None:
    assert SECRET not in repr(ClientCredentials("https://x.example/t", CLIENT_ID, SECRET))


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/predictions/resnet50"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/predictions/resnet50"),
        ("https://a.execute-api.eu-west-1.amazonaws.com/prod/predictions/resnet50/", None),
        ("https://a.execute-api.eu-west-1.amazonaws.com/prod/eks/predictions/resnet50", None),
    ],
)
def test_the_route_is_appended_unless_given(url: str, route: str | None) -> None:
    assert predictions_url(url) == (route or url.rstrip("/"))


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=lambda: 1445412480.0) == 10.0
    assert retry_after_s("soon") is None and retry_after_s(None) is None and retry_after_s("nan") is None
