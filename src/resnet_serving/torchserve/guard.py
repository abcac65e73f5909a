"""The HTTP guard in front of TorchServe's inference port (`serve --retry-after N`, on by default with N = 1).

TorchServe 0.12 answers a full job queue at once with a 503, but with no ``Retry-After`` and a body in its own
format whose message ("has no worker ... use scale workers API") misleads a client. The guard forwards every
request to TorchServe unchanged and rewrites only those 503s: our JSON error body, ``Retry-After: N``. It answers
two kinds of request itself, because TorchServe would mishandle them: headers over Netty's limit (400), and a
body sent as ``application/x-www-form-urlencoded`` (415, in the handler's words), which TorchServe's front end
decodes as a form and answers with a 500 when the bytes are an image. It costs one loopback hop per request on
one core of its own thread's event loop; ``bench`` measures the served path through it and reports its cost
against TorchServe's own port (docs: explanation/reliability). ``--retry-after 0`` removes it.

It also admits at most as many requests as TorchServe can hold (its queue plus a batch per worker,
:class:`Admission`); the others wait their turn, first come first served, for up to ``--admission-wait`` seconds
before they are answered 503. A client that ignores Retry-After therefore resends at most once per wait instead
of at once: without the wait, a closed loop of 64 clients made the pod answer about 1,600 rejections a second on
the cores that run the forward pass (docs: explanation/reliability)."""

from __future__ import annotations

import asyncio
import collections
import json
import re
import resource
import threading
import time
import uuid
from typing import Any

from resnet_serving.errors import ConfigError, InputError, Overloaded, ResnetServingError
from resnet_serving.inference.protocol import FORM_URLENCODED, form_urlencoded_refused, normalise_content_type

#: Retry-After's unit is whole seconds (RFC 9110 §10.2.3), and a full queue drains within a few batches: the
#: smallest value that does not invite an immediate retry.
DEFAULT_RETRY_AFTER_S = 1

#: How long a request may wait for a place in TorchServe's queue before it is answered 503: a closed-loop client
#: that ignores Retry-After resends at most once per wait, while an accepted request waits at most this long more.
DEFAULT_ADMISSION_WAIT_S = 2.0
#: The guard waits this much longer than TorchServe's response timeout, so TorchServe's own answer comes first.
GUARD_TIMEOUT_MARGIN_S = 5
#: Beyond this many waiting requests, or this many bytes of their bodies, a request is answered 503 at once.
MAX_WAITING = 4096
MAX_WAITING_BYTES = 256 << 20

#: TorchServe's front end (Netty's default) refuses a request whose headers exceed this many bytes; the guard
#: answers such a request itself, with a 400 that says so, instead of forwarding what TorchServe would drop.
MAX_HEADER_BYTES = 8192

#: Hop-by-hop headers (RFC 9110 §7.6.1), and those aiohttp answers or recomputes itself; never forwarded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
    | {"host", "content-length", "expect"}
)


#: An id the caller sent is kept only if it is a plain token, the handler's rule: it lands in logs and log queries.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
#: What SageMaker hands the container from the front door: its custom attributes (the client's X-TopK, or
#: SageMaker's own ``key=value`` form) and its inference id (the client's X-Request-Id).
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID = "X-Amzn-SageMaker-Inference-Id"


def request_id(headers: Any) -> str:
    """The request's id: the caller's X-Request-Id (or, on SageMaker, ``request-id=`` in the custom attributes,
    else the inference id) if it is a plain token, else a new one. The guard forwards it as X-Request-Id, so the
    handler writes the same id into the body and the request log."""
    attributes = _custom_attributes(headers.get(CUSTOM_ATTRIBUTES, ""))
    for sent in (headers.get("X-Request-Id"), attributes.get("request-id"), headers.get(INFERENCE_ID)):
        if sent is not None and REQUEST_ID.match(sent.strip()):
            return sent.strip()
    return uuid.uuid4().hex


def _custom_attributes(value: str) -> dict[str, str]:
    """``key=value`` pairs, and a bare value under the key ``""`` (what the front door sends: the X-TopK value)."""
    pairs: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if part.strip():
            pairs[key.strip().lower() if sep else ""] = (val if sep else key).strip()
    return pairs


def overloaded_body(retry_after: int, model: str) -> bytes:
    return refused_body(Overloaded(f"the {model} queue is full: retry after {retry_after} s"), model)


def refused_body(err: ResnetServingError, model: str) -> bytes:
    """An error the guard answers itself: the handler's error fields and the model (no worker saw it)."""
    return json.dumps({**err.to_dict(), "model": model}).encode()


def checked_admission_wait(value: float) -> float:
    """``--admission-wait``'s value (``serve`` and ``bench``): a finite number of seconds ≥ 0."""
    if not 0 <= value <= 600:  # also refuses nan
        raise InputError(f"--admission-wait {value:g}: must be between 0 and 600 seconds")
    return value


def _expire(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)


class Admission:
    """At most ``limit`` requests inside TorchServe; the next ones wait in arrival order for up to ``wait``
    seconds, and at most ``max_waiting`` of them wait at once. Runs on the guard's event loop only."""

    def __init__(
        self, limit: int, wait: float, max_waiting: int = MAX_WAITING, max_waiting_bytes: int = MAX_WAITING_BYTES
    ) -> None:
        if limit < 1:
            raise ConfigError(f"admission limit {limit}: must be ≥ 1")
        self.limit, self.wait = limit, wait
        self.max_waiting, self.max_waiting_bytes = max_waiting, max_waiting_bytes
        self.inside = 0
        self.waiting = 0
        self.waiting_bytes = 0
        self._queue: collections.deque[asyncio.Future[bool]] = collections.deque()

    async def enter(self, size: int = 0) -> bool:
        """True once a request of ``size`` bytes may go to TorchServe (call :meth:`leave` after its answer);
        False: refuse it."""
        if self.inside < self.limit and not self.waiting:
            self.inside += 1
            return True
        if self.wait <= 0 or self.waiting >= self.max_waiting:
            return False
        if self.waiting_bytes + size > self.max_waiting_bytes:
            return False
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._queue.append(turn)
        self.waiting += 1
        self.waiting_bytes += size
        timer = loop.call_later(self.wait, _expire, turn)
        try:
            return await turn  # a cancelled request cancels it; leave() skips it
        finally:
            timer.cancel()
            self.waiting -= 1
            self.waiting_bytes -= size

    def leave(self) -> None:
        """A request left TorchServe: its place goes to the longest waiting request, else it is free."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():
                turn.set_result(True)  # the place passes on: ``inside`` is unchanged
                return
        self.inside -= 1


def checked_retry_after(value: int) -> int:
    """``--retry-after``'s value (``serve`` and ``bench``), refused when negative: the caller's mistake."""
    if value < 0:
        raise InputError(f"--retry-after {value}: must be ≥ 0 seconds")
    return value


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit, as TorchServe's JVM does for itself: every
    client connection the guard holds is one more file, and a soft limit of 1024 would refuse the 1025th."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # RLIM_INFINITY as the soft limit is refused on some kernels: keep soft
            return soft
        return hard
    return soft


class Guard:
    """Listens on ``host:port`` and forwards to ``upstream`` (TorchServe's inference URL, on loopback), in a
    thread of its own with its own event loop."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        upstream: str,
        retry_after: int,
        model: str,
        max_body: int,
        timeout: float,
        admission: Admission | None = None,
        sagemaker: bool = False,
    ) -> None:
        self.host, self.port, self.upstream = host, port, upstream.rstrip("/")
        self.retry_after, self.model, self.max_body, self.timeout = retry_after, model, max_body, timeout
        self.admission = admission
        #: On SageMaker, each answer also carries its request id as custom attributes: SageMaker returns no other
        #: header of the container's, and the front door maps that one to X-Request-Id.
        self.sagemaker = sagemaker
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="guard", daemon=True)
        self._runner: Any = None
        self._session: Any = None
        self._latency: Any = None

    @property
    def thread_id(self) -> int | None:
        """The kernel's id of the guard's thread (for its CPU time), once started."""
        return self._thread.native_id

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        raise_open_files_limit()
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        except OSError as e:
            self.stop()
            raise ConfigError(f"--port {self.port}: {e.strerror or e}") from e

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    @classmethod
    def in_front_of(
        cls,
        cfg: Any,
        *,
        host: str,
        port: int,
        retry_after: int,
        admission_wait: float = DEFAULT_ADMISSION_WAIT_S,
        sagemaker: bool = False,
    ) -> Guard:
        """The guard on ``host:port`` for the TorchServe that ``cfg`` (a ServeConfig) describes. It admits what
        TorchServe holds: its job queue and a batch in each worker."""
        return cls(
            host=host,
            port=port,
            upstream=cfg.inference_url,
            retry_after=retry_after,
            model=cfg.model_name,
            max_body=cfg.max_request_size,
            # TorchServe answers a request that outlives its response timeout itself: never cut it short here
            timeout=cfg.response_timeout_s + GUARD_TIMEOUT_MARGIN_S,
            admission=Admission(cfg.queue_size + cfg.workers * cfg.batch_size, admission_wait),
            sagemaker=sagemaker,
        )

    async def _start(self) -> None:
        # aiohttp and prometheus_client are the serve extra's: the CLI (and the operator image) imports this module
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        from resnet_serving.inference.metrics import GUARD_REQUEST_SECONDS

        self._latency = GUARD_REQUEST_SECONDS

        self._session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(sock_read=self.timeout), auto_decompress=False
        )
        # the low-level server: no router or middlewares to run per request, every path and method forwarded
        self._runner = web.ServerRunner(
            web.Server(self._forward, request_factory=self._request_factory), access_log=None, handle_signals=False
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    def _request_factory(self, message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
        from aiohttp import web

        return web.BaseRequest(message, payload, protocol, writer, task, self._loop, client_max_size=self.max_body)

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: Any) -> Any:
        rid = request_id(request.headers)
        response = await self._answer(request, rid)
        # every answer names its request: clients and log pipelines read the header, not the body
        response.headers["X-Request-Id"] = rid
        if self.sagemaker:
            response.headers[CUSTOM_ATTRIBUTES] = rid
        return response

    async def _answer(self, request: Any, rid: str) -> Any:
        from aiohttp import web

        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if size > MAX_HEADER_BYTES:
            err = InputError(f"the request's headers are {size} bytes; the limit is {MAX_HEADER_BYTES}")
            return web.json_response(err.to_dict(), status=400)
        if normalise_content_type(request.headers.get("Content-Type")) == FORM_URLENCODED:
            return web.Response(
                status=415, body=refused_body(form_urlencoded_refused(), self.model), content_type="application/json"
            )
        # Predictions (POST) are admitted once their body is in: a client that trickles its body holds no place in
        # TorchServe meanwhile. Health checks and metrics (GET) never wait behind predictions.
        body = await request.read()
        if request.method != "POST":
            return await self._pass_on(request, body, rid)
        started = time.monotonic()
        response = await self._admitted(request, body, rid)
        # the client's view at the pod: admission wait and TorchServe's answer (handler time excludes both)
        self._latency.labels(self.model, str(response.status)).observe(time.monotonic() - started)
        return response

    async def _admitted(self, request: Any, body: bytes, rid: str) -> Any:
        admission = self.admission
        if admission is not None and not await admission.enter(len(body)):
            return self._overloaded()
        try:
            return await self._pass_on(request, body, rid)
        finally:
            if admission is not None:
                admission.leave()

    def _overloaded(self) -> Any:
        from aiohttp import web

        return web.Response(
            status=503,
            body=overloaded_body(self.retry_after, self.model),
            headers={"Content-Type": "application/json", "Retry-After": str(self.retry_after)},
        )

    async def _pass_on(self, request: Any, body: bytes, rid: str) -> Any:
        from aiohttp import ClientError, web

        headers = [
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "x-request-id"
        ]
        headers.append(("X-Request-Id", rid))
        topk = _custom_attributes(request.headers.get(CUSTOM_ATTRIBUTES, "")).get("")
        if topk is not None and "X-TopK" not in request.headers:
            headers.append(("X-TopK", topk))  # the front door's X-TopK, which SageMaker carried as custom attributes
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
            ) as r:
                data = await r.read()
                # TorchServe's x-request-id is its own id, not the one the handler wrote into the body
                status = r.status
                answer = [(k, v) for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP | {"x-request-id"}]
        except (ClientError, asyncio.TimeoutError):
            status, answer, data = 503, [], b""
        if status == 503:
            return self._overloaded()
        response = web.Response(status=status, body=data)
        for k, v in answer:  # a repeated header (Set-Cookie, Vary…) stays repeated
            response.headers.add(k, v)
        return response
