"""The client of the predictions API, as ``resnet-serving predict`` calls it: a serve (loopback, an ALB) or the
API Gateway front door of infra/ (stack ``resnet-serving-frontdoor``).

The front door wants two things on every request (infra/resnet_infra/frontdoor.py):

* ``Authorization: Bearer <token>``: a Cognito access token with the scope ``resnet-serving/invoke``, from the
  user pool's token endpoint (output ``TokenUrl``) by the OAuth2 client-credentials grant: HTTP Basic with the
  app client's id (output ``MachineClientId``) and secret. :class:`TokenSource` fetches it once and reuses it
  until shortly before its ``expires_in``, and again when API Gateway says it expired.
* ``x-api-key``: the usage plan's API key (output ``ApiKeyId`` names it; its value comes from
  ``aws apigateway get-api-key --include-value``).

Its errors are answered by API Gateway itself, as JSON ``{"message": ...}``: 401 (token missing, invalid or
expired), 403 (``Forbidden``: API key missing or not in the usage plan, or WAF; ``Missing Authentication
Token``: no such route), 429 (throttled by the stage or the usage plan) and 413 (body over its limit). Each one
becomes a typed error here whose message says what to change. Secrets never enter a message or a log. Torch-free.
"""

from __future__ import annotations

import email.utils
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from resnet_serving import MODEL_NAME, ui
from resnet_serving.errors import ConfigError, Overloaded, ResnetServingError, TorchServeError
from resnet_serving.settings import ENV_API_KEY, ENV_CLIENT_SECRET

#: The scope the front door's routes require: ``<resource server>/<api.oauth_scope>`` of infra/config.json.
FRONT_DOOR_SCOPE = "resnet-serving/invoke"
#: A token is renewed this long before it expires, or a tenth of its life earlier when that is shorter.
EXPIRY_MARGIN_S = 60.0
#: How often a 429 with Retry-After is retried, and the longest Retry-After that is waited for.
THROTTLE_RETRIES = 3
MAX_RETRY_AFTER_S = 60.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def predictions_url(url: str, model: str = MODEL_NAME) -> str:
    """The route to POST to: ``url`` itself when it already ends in ``/predictions/<model>`` (the front door's
    ``ApiUrl`` and ``EksApiUrl`` outputs do), else ``url/predictions/<model>`` (a serve's base URL)."""
    base = url.rstrip("/")
    parts = urlsplit(base).path.rsplit("/", 2)
    if len(parts) == 3 and parts[1] == "predictions" and parts[2]:
        return base
    return f"{base}/predictions/{model}"


def _require_tls(url: str, what: str, flag: str) -> None:
    """Credentials travel only over HTTPS, or over plain HTTP to this machine (a test server, a port-forward)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{flag} {url!r}: expected an https:// URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(f"{flag} {url}: {what} would travel in clear text; use https://")


def read_secret(path: Path | str, *, flag: str = "--client-secret-file") -> str:
    """The secret held in ``path`` (``-``: standard input), without its trailing newline."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{flag} {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{flag} {path}: not a text file") from e
    secret = text.strip()
    if not secret:
        raise ConfigError(f"{flag} {path}: the file is empty")
    return secret


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth2 client-credentials grant at ``token_url``. The secret is left out of ``repr``."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None

    def __post_init__(self) -> None:
        _require_tls(self.token_url, "the client secret", "--token-url")


def _message(body: Any, fallback: str = "") -> str:
    """The human part of an error body: ours (``message``), API Gateway's (``message``) or SageMaker's
    (``Message``, ``OriginalMessage``)."""
    if isinstance(body, Mapping):
        for key in ("message", "Message", "OriginalMessage", "error_description", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return fallback


def _json(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def retry_after_s(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class TokenSource:
    """Access tokens from the client-credentials grant, fetched once and reused until shortly before they expire.

    ``clock`` is a monotonic clock in seconds; ``fetches`` counts the calls to the token endpoint.
    """

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.session = session or requests.Session()
        self.clock = clock
        self.fetches = 0
        self._token: str | None = None
        self._renew_at = 0.0

    def token(self) -> str:
        """A token that is not about to expire: the cached one, or a new one."""
        if self._token is None or self.clock() >= self._renew_at:
            self._token, self._renew_at = self._fetch()
        return self._token

    def invalidate(self) -> None:
        """Forget the cached token (API Gateway said it expired): the next :meth:`token` fetches a new one."""
        self._token = None

    def _fetch(self) -> tuple[str, float]:
        c = self.credentials
        form = {"grant_type": "client_credentials"}
        if c.scope:
            form["scope"] = c.scope
        started = self.clock()
        try:
            r = self.session.post(
                c.token_url,
                data=form,
                auth=(c.client_id, c.client_secret),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
            )
        except requests.ConnectionError as e:
            raise ConfigError(
                f"cannot reach the token endpoint {c.token_url} ({type(e).__name__}): --token-url is the front "
                "door stack's TokenUrl output"
            ) from e
        except requests.RequestException as e:
            raise ConfigError(f"the token endpoint {c.token_url} did not answer ({type(e).__name__})") from e
        self.fetches += 1
        body = _json(r)
        if r.status_code in (400, 401):
            raise ConfigError(self._refusal(r.status_code, body))
        if r.status_code != 200:
            detail = _message(body, r.text[:200].strip())
            hint = " (is --token-url the TokenUrl output?)" if r.status_code in (403, 404, 405) else ""
            error = ConfigError if r.status_code < 500 else ResnetServingError
            raise error(f"the token endpoint {c.token_url} answered HTTP {r.status_code}: {detail}{hint}")
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(
                f"the token endpoint {c.token_url} answered 200 without an access_token: is --token-url the user "
                "pool's /oauth2/token (the TokenUrl output)?"
            )
        expires_in = body.get("expires_in")
        if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
            renew_at = started + expires_in - min(EXPIRY_MARGIN_S, expires_in / 10)
        else:
            renew_at = math.inf  # no lifetime given: reused until API Gateway says it expired
        return token, renew_at

    def _refusal(self, status: int, body: Any) -> str:
        """What a 400 or 401 of the token endpoint means (RFC 6749 section 5.2), and what to change."""
        c = self.credentials
        code = body.get("error") if isinstance(body, Mapping) else None
        said = f"HTTP {status}" + (f" {code}" if code else "")
        description = body.get("error_description") if isinstance(body, Mapping) else None
        if description:
            said += f": {description}"
        fixes = {
            "invalid_client": f"the client id {c.client_id!r} or its secret is wrong: the id is the MachineClientId "
            "output, the secret is `aws cognito-idp describe-user-pool-client ... --query UserPoolClient.ClientSecret`",
            "invalid_scope": f"the app client may not have scope {c.scope!r}; the front door's is {FRONT_DOOR_SCOPE} "
            "(or leave --scope out to get every scope the client may have)",
            "unauthorized_client": "this app client may not use the client-credentials grant (the stack's "
            "MachineClient may)",
            "invalid_grant": "the grant was refused",
            "unsupported_grant_type": "this endpoint does not take the client-credentials grant: is --token-url "
            "the TokenUrl output?",
        }
        fix = fixes.get(str(code)) or (
            "the client id or secret is wrong" if status == 401 else "check --client-id, the secret and --scope"
        )
        return f"the token endpoint refused the client credentials ({said}): {fix}"


@dataclass(frozen=True)
class Answer:
    """One prediction's answer: its HTTP status and JSON body (or ``{"status", "message"}`` for a non-JSON one)."""

    status: int
    body: dict[str, Any]

    @property
    def message(self) -> str:
        return _message(self.body, str(self.body))


class PredictClient:
    """POST images to ``url`` (a serve's base URL or the front door's ``ApiUrl``), with a bearer token from
    ``tokens`` and ``api_key`` as ``x-api-key`` when given.

    Errors that every further image would meet too are raised: :class:`ConfigError` for refused credentials
    (401, 403), :class:`Overloaded` when still throttled (429) after honouring Retry-After, :class:`TorchServeError`
    when nothing answers. Any other status (400, 413, 503, ...) is the image's own :class:`Answer`.
    """

    def __init__(
        self,
        url: str,
        *,
        model: str = MODEL_NAME,
        tokens: TokenSource | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        throttle_retries: int = THROTTLE_RETRIES,
        max_retry_after: float = MAX_RETRY_AFTER_S,
    ) -> None:
        self.url = predictions_url(url, model)
        if tokens is not None:
            _require_tls(self.url, "the bearer token", "--url")
        if api_key:
            _require_tls(self.url, "the API key", "--url")
        self.tokens = tokens
        self.api_key = api_key
        self.timeout = timeout
        self.session = session or requests.Session()
        self.sleep = sleep
        self.throttle_retries = throttle_retries
        self.max_retry_after = max_retry_after

    def predict(self, data: bytes, *, topk: int, content_type: str, name: str = "image") -> Answer:
        throttled = 0
        token_renewed = False
        while True:
            r = self._post(data, topk=topk, content_type=content_type)
            body = _json(r)
            if not isinstance(body, dict):
                body = {"status": r.status_code, "message": r.text[:500]}
            if r.status_code == 401 and self.tokens is not None and not token_renewed:
                self.tokens.invalidate()  # expired or revoked since it was fetched: one new token, one more try
                token_renewed = True
                continue
            if r.status_code == 429 and throttled < self.throttle_retries:
                wait = retry_after_s(r.headers.get("Retry-After"))
                if wait is not None and wait <= self.max_retry_after:
                    throttled += 1
                    with ui.status(f"{name}: throttled (HTTP 429), retrying in {wait:g} s as Retry-After says"):
                        self.sleep(wait)
                    continue
            self._raise_for_refusal(r, body, retried=throttled)
            return Answer(r.status_code, body)

    def _post(self, data: bytes, *, topk: int, content_type: str) -> requests.Response:
        headers = {
            "Content-Type": content_type,
            # TorchServe drops POST query strings before the handler: top-k travels in a header, and the front
            # door's SageMaker route passes only SageMaker's custom attributes through
            "X-TopK": str(topk),
            "X-Amzn-SageMaker-Custom-Attributes": f"topk={topk}",
            # image/* is a binary media type of the front door: ask for JSON, so the answer is never taken for one
            "Accept": "application/json",
        }
        if self.tokens is not None:
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
        if self.api_key:
            headers["x-api-key"] = self.api_key
        try:
            return self.session.post(self.url, data=data, headers=headers, timeout=self.timeout)
        except requests.ConnectionError as e:
            raise TorchServeError(
                f"no server at {self.url} ({type(e).__name__}); start one with `make serve`, or pass the front "
                "door's ApiUrl output as --url"
            ) from e
        except requests.RequestException as e:
            raise TorchServeError(f"{self.url}: {type(e).__name__}: {e}") from e

    def _raise_for_refusal(self, r: requests.Response, body: dict[str, Any], *, retried: int) -> None:
        status, said = r.status_code, _message(body, r.reason or "")
        if status == 401:
            if self.tokens is None:
                raise ConfigError(
                    f"{self.url} answered 401 ({said}): it wants a Cognito token; pass --token-url, --client-id "
                    f"and the client secret (--client-secret-file or ${ENV_CLIENT_SECRET})"
                )
            raise ConfigError(
                f"{self.url} refused a new token too (HTTP 401: {said}): the token must carry scope "
                f"{FRONT_DOOR_SCOPE} and come from this API's user pool (the same stack's TokenUrl and "
                "MachineClientId)"
            )
        if status == 403:
            if said == "Missing Authentication Token":
                raise ConfigError(
                    f"{self.url} answered 403 {said}: API Gateway has no such route; --url is the ApiUrl output "
                    f"(it ends in /predictions/{MODEL_NAME}), and the method is POST"
                )
            if not self.api_key:
                raise ConfigError(
                    f"{self.url} answered 403 ({said}) and no API key was sent: pass the usage plan's key with "
                    f"${ENV_API_KEY} or --api-key (aws apigateway get-api-key --api-key <ApiKeyId output> "
                    "--include-value --query value)"
                )
            raise ConfigError(
                f"{self.url} answered 403 ({said}) to the API key that was sent: it is not a key of this API's "
                "usage plan (or is disabled), or the web ACL blocked the request"
            )
        if status == 429:
            waited = f" after {retried} retr{'y' if retried == 1 else 'ies'} as Retry-After said" if retried else ""
            raise Overloaded(
                f"{self.url} throttled the request (HTTP 429: {said}){waited}: the stage's or the usage plan's "
                "rate limit is reached; try again later, or ask for a higher limit"
            )


def image_too_large(answer: Answer, size: int) -> str | None:
    """The message for an image the server refused as too large (413, or SageMaker's 413 that the front door
    answers as 400), else ``None``."""
    original = answer.body.get("OriginalStatusCode")
    if answer.status != 413 and not (answer.status == 400 and original == 413):
        return None
    return (
        f"the request body ({size} bytes) is over the server's limit ({answer.message}); through the front "
        "door's SageMaker route a body may hold at most 6 MB: resize the image"
    )
