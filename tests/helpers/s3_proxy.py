"""A fault-injecting HTTP proxy for S3 tests: loopback TCP in front of the moto server, faults on demand.

The code under test gets the proxy's URL as its ``endpoint_url`` and cannot tell it from S3. Each request is read
whole from the client, checked against the armed faults (first match wins), then forwarded to moto on a fresh
connection, and moto's answer relayed. Faults:

* ``latency``: wait before forwarding;
* ``reset``: read the request, then reset the connection (TCP RST) without an answer;
* ``status``: answer an S3 XML error (500 InternalError, 503 SlowDown, …) without forwarding;
* ``truncate``: forward, then relay the response head and only the first bytes of its body, then reset;
* :meth:`S3FaultProxy.cut_after`: the network dies after the client has sent N more bytes (head and body
  alike): moto gets a body cut at that byte (a head cut short is dropped, as S3 would), and every later
  connection is reset until :meth:`heal`.

Every request is recorded (:attr:`S3FaultProxy.log`) with the fault it met, so a test can count retries.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024


@dataclass
class Request:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-cased names
    head: bytes  # the raw request line and headers, as forwarded
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Fault:
    """``action`` on requests that ``match``, for the next ``times`` of them (``-1``: until cleared)."""

    action: str  # latency | reset | status | truncate
    match: Callable[[Request], bool]
    times: int = 1
    seconds: float = 0.0  # latency
    status: int = 503  # status
    code: str = "SlowDown"  # status
    keep: float = 0.5  # truncate: the fraction of the body relayed (or bytes, when ≥ 1)
    lie: bool = False  # truncate: rewrite Content-Length to the bytes relayed, so HTTP cannot tell
    strip_checksums: bool = False  # truncate: drop the x-amz-checksum-* headers too, so botocore cannot tell
    hits: int = field(default=0, init=False)


@dataclass(frozen=True)
class Logged:
    method: str
    target: str
    fault: str  # "" when forwarded untouched
    status: int | None  # what the client got; None when it got no answer
    size: int  # bytes the client sent for this request (head and body)


def op(method: str, pattern: str = "", query: str | None = None) -> Callable[[Request], bool]:
    """A matcher: the HTTP method, a regex searched in the path, and a query parameter that must be present."""

    def match(r: Request) -> bool:
        if method != "*" and r.method != method:
            return False
        if pattern and not re.search(pattern, r.path):
            return False
        return (
            query is None or query in r.query.split("&") or any(p.startswith(query + "=") for p in r.query.split("&"))
        )

    return match


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN: what a dropped connection looks like to the client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Closed(Exception):
    pass


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise _Closed
        self.buf += chunk

    def until(self, marker: bytes, limit: int = _MAX_HEAD) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise _Closed
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def rest(self) -> bytes:
        try:
            while True:
                self._fill()
        except (_Closed, OSError):
            pass
        out, self.buf = self.buf, b""
        return out

    def chunked(self) -> bytes:
        """A chunked body, raw (sizes, data, trailers), as it must be forwarded."""
        out = b""
        while True:
            line = self.until(b"\r\n")
            out += line
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = self.until(b"\r\n")
                    out += trailer
                    if trailer == b"\r\n":
                        return out
            out += self.exactly(size + 2)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return first[0], first[1] if len(first) > 1 else "/", headers


def _error_xml(status: int, code: str) -> bytes:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy'
        f"</Message><RequestId>fault</RequestId></Error>"
    ).encode()
    reason = {500: "Internal Server Error", 503: "Slow Down", 502: "Bad Gateway"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
        f"x-amz-request-id: fault\r\n\r\n"
    ).encode()
    return head + body


class S3FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.host, self.port = host, self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.bytes_in = 0  # bytes the clients sent, all connections together
        self._budget: int | None = None  # cut_after: bytes still allowed through
        self._dead = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"s3-fault-proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- arming ---------------------------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def cut_after(self, n: int) -> None:
        """The network dies once the clients have sent ``n`` more bytes; later connections are reset."""
        with self._lock:
            self._budget = n

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()
            self._budget = None
            self._dead = False

    def reset_counters(self) -> None:
        with self._lock:
            self.log.clear()
            self.bytes_in = 0

    @property
    def dead(self) -> bool:
        return self._dead

    def close(self) -> None:
        self._stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> S3FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- serving --------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _pick(self, request: Request) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times != 0 and fault.match(request):
                    fault.times -= 1 if fault.times > 0 else 0
                    fault.hits += 1
                    return fault
        return None

    def _record(self, request: Request, fault: str, status: int | None) -> None:
        with self._lock:
            self.log.append(Logged(request.method, request.target, fault, status, len(request.head + request.body)))

    def _spend(self, data: bytes) -> int:
        """Count bytes the client sent; return how many of them get through before a cut (all, when none)."""
        with self._lock:
            self.bytes_in += len(data)
            if self._budget is None:
                return len(data)
            allowed = min(len(data), self._budget)
            self._budget -= allowed
            if allowed < len(data):
                self._dead = True
            return allowed

    def _serve(self, client: socket.socket) -> None:
        reader = _Reader(client)
        try:
            while True:
                if self._dead:
                    _reset(client)
                    return
                head = reader.until(_HEAD_END)
                method, target, headers = _parse_head(head)
                if headers.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = re.sub(rb"(?im)^expect:[^\r\n]*\r\n", b"", head)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    body = reader.chunked()
                else:
                    body = reader.exactly(int(headers.get("content-length", "0") or 0))
                request = Request(method, target, headers, head, body)
                if not self._handle(client, request):
                    client.close()
                    return
        except (_Closed, OSError, ValueError):
            _reset(client)

    def _handle(self, client: socket.socket, request: Request) -> bool:
        """One request; False when the client connection was closed."""
        raw = request.head + request.body
        allowed = self._spend(raw)
        if allowed < len(raw):  # the network dies mid-request
            # A server acts on no request whose head did not arrive whole (S3 does not; moto's HTTP server would
            # act on the header lines that did). A body cut short is sent on: moto keeps such a body, which is
            # harsher than S3, which refuses it.
            if allowed >= len(request.head):
                self._forward_partial(raw[:allowed])
            self._record(request, "cut", None)
            _reset(client)
            return False
        fault = self._pick(request)
        if fault is not None and fault.action == "latency":
            time.sleep(fault.seconds)
        if fault is not None and fault.action == "reset":
            self._record(request, "reset", None)
            _reset(client)
            return False
        if fault is not None and fault.action == "status":
            self._record(request, f"{fault.status} {fault.code}", fault.status)
            client.sendall(_error_xml(fault.status, fault.code))
            return True
        status, head, body, keep_alive = self._forward(request)
        if fault is not None and fault.action == "truncate":
            keep = int(fault.keep) if fault.keep >= 1 else int(len(body) * fault.keep)
            self._record(request, f"truncate {keep}/{len(body)}{' (lying)' if fault.lie else ''}", status)
            if fault.lie:
                head = re.sub(rb"(?im)^content-length:[^\r\n]*", f"Content-Length: {keep}".encode(), head)
                if fault.strip_checksums:
                    head = re.sub(rb"(?im)^x-amz-checksum-[^\r\n]*\r\n", b"", head)
                client.sendall(head + body[:keep])
                return False  # a clean close: to the client the short body looks whole
            client.sendall(head + body[:keep])
            _reset(client)
            return False
        self._record(request, fault.action if fault else "", status)
        client.sendall(head + body)
        return keep_alive

    def _forward_partial(self, data: bytes) -> None:
        try:
            with socket.create_connection(self.upstream, timeout=10) as up:
                up.sendall(data)
                up.shutdown(socket.SHUT_WR)
                _Reader(up).rest()  # moto answers (or not) to a cut request; nobody is listening
        except OSError:
            pass

    def _forward(self, request: Request) -> tuple[int, bytes, bytes, bool]:
        with socket.create_connection(self.upstream, timeout=60) as up:
            up.sendall(request.head + request.body)
            reader = _Reader(up)
            head = reader.until(_HEAD_END)
            while head.startswith(b"HTTP/1.1 100"):
                head = reader.until(_HEAD_END)
            status = int(head.split(b" ", 2)[1])
            _, _, headers = _parse_head(b"GET / HTTP/1.1\r\n" + head.split(b"\r\n", 1)[1])
            if request.method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = reader.chunked()
            elif "content-length" in headers:
                body = reader.exactly(int(headers["content-length"]))
            else:
                body = reader.rest()
                head = head[: -len(_HEAD_END)] + f"\r\nContent-Length: {len(body)}".encode() + _HEAD_END
        keep_alive = headers.get("connection", "").lower() != "close"
        return status, head, body, keep_alive
