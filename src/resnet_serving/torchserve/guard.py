"""An optional HTTP guard in front of TorchServe's inference port (`serve --retry-after N`).

TorchServe 0.12 answers a full job queue at once with a 503, but with no ``Retry-After`` and a body in its own
format whose message ("has no worker ... use scale workers API") misleads a client. The guard forwards every
request to TorchServe unchanged and rewrites only those 503s: our JSON error body, ``Retry-After: N``. It is one
extra hop per request, so it is off by default (README: Reliability, for its measured cost)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from resnet_serving.errors import ConfigError, ResnetServingError

#: Hop-by-hop headers (RFC 9110 §7.6.1), and those aiohttp answers or recomputes itself; never forwarded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
    | {"host", "content-length", "expect"}
)


class Overloaded(ResnetServingError):
    """TorchServe's queue for the model is full (or TorchServe does not answer): retry later."""

    http_status = 503
    code = "overloaded"


def overloaded_body(retry_after: int, model: str) -> bytes:
    err = Overloaded(f"the {model} queue is full: retry after {retry_after} s")
    return json.dumps({**err.to_dict(), "model": model}).encode()


class Guard:
    """Listens on ``host:port`` and forwards to ``upstream`` (TorchServe's inference URL, on loopback), in a
    thread of its own with its own event loop."""

    def __init__(
        self, *, host: str, port: int, upstream: str, retry_after: int, model: str, max_body: int, timeout: float
    ) -> None:
        self.host, self.port, self.upstream = host, port, upstream.rstrip("/")
        self.retry_after, self.model, self.max_body, self.timeout = retry_after, model, max_body, timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="guard", daemon=True)
        self._runner: Any = None
        self._session: Any = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def start(self) -> None:
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

    async def _start(self) -> None:
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        self._session = ClientSession(
            connector=TCPConnector(limit=0), timeout=ClientTimeout(sock_read=self.timeout), auto_decompress=False
        )
        app = web.Application(client_max_size=self.max_body)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: Any) -> Any:
        from aiohttp import ClientError, web

        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body, allow_redirects=False
            ) as r:
                data = await r.read()
                status, answer = r.status, {k: v for k, v in r.headers.items() if k.lower() not in HOP_BY_HOP}
        except (ClientError, asyncio.TimeoutError):
            status, answer, data = 503, {}, b""
        if status == 503:
            answer = {"Content-Type": "application/json", "Retry-After": str(self.retry_after)}
            data = overloaded_body(self.retry_after, self.model)
        return web.Response(status=status, body=data, headers=answer)
