"""Serve a `GraphSimulator` over real HTTP on a loopback port (port 0 picks a free one).

`answer()` is everything this HTTP layer does with one request (body limit, form and JSON bodies,
transport faults, JSON encoding) apart from the socket itself, so that an in-process transport
(the tests' `httpx.MockTransport` adapter) behaves exactly like the server.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

from ig_story_metrics.simulator.api import GraphSimulator
from ig_story_metrics.simulator.protocol import Request, to_json

MAX_BODY = 1 << 20
STOP_POLL_SECONDS = 0.02
DRAIN_LIMIT = 16 * MAX_BODY  # a larger body is refused unread, on a connection then closed
JSON_TYPE = "application/json; charset=UTF-8"
HTML_502 = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass(frozen=True, slots=True)
class Reply:
    """What goes back on the wire: status, body bytes, their type and the other headers."""

    status: int
    payload: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def too_large() -> Reply:
    body = {"error": {"message": "Request too large", "code": 1}}
    return Reply(413, json.dumps(body).encode())


def parse_request(
    method: str, target: str, headers: Iterable[tuple[str, str]], raw: bytes
) -> Request:
    """The simulator's view of an HTTP request: path, query, form (urlencoded or JSON body) and
    lower-cased headers."""
    url = urlsplit(target)
    lowered = {k.lower(): v for k, v in headers}
    form: dict[str, str] = {}
    if raw and "json" in lowered.get("content-type", ""):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict):
            form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
    elif raw:
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return Request(
        method=method,
        path=url.path,
        query=dict(parse_qsl(url.query, keep_blank_values=True)),
        form=form,
        headers=lowered,
    )


def answer(
    simulator: GraphSimulator,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]],
    raw: bytes,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Reply | None:
    """The reply to one request; None: close the connection without a word (a "drop" fault).
    Every request waits `Faults.latency_seconds` first (no lock held, so requests wait side by
    side); a "slow" fault calls `sleep` with its delay too."""
    if simulator.faults.latency_seconds > 0:
        sleep(simulator.faults.latency_seconds)
    if len(raw) > MAX_BODY:
        return too_large()
    request = parse_request(method, target, headers, raw)
    fault = simulator.transport_fault(request)
    if fault == "drop":
        return None
    if fault == "slow":
        sleep(simulator.faults.slow_seconds)
    if fault == "html":
        return Reply(502, HTML_502, "text/html")
    status, extra, body = simulator.handle(request)
    if isinstance(body, bytes):  # the CDN's media: sent as they are, with their own type
        kind = extra.pop("Content-Type", "application/octet-stream")
        return Reply(status, body, kind, headers=extra)
    if fault == "gzip":  # says gzip, is not: the client's decoder fails
        extra = {**extra, "Content-Encoding": "gzip"}
    return Reply(status, to_json(body), headers=extra)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silent: access logs would print request lines, and a careless client's token with them."""

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > DRAIN_LIMIT:  # not even read: refused, and the connection closed after
            self._send(too_large(), close=True)
            return
        # Read whole (answer() refuses more than MAX_BODY): a body left unread would be taken for
        # the next request on this kept-alive connection, and closing on unread data resets it.
        raw = self.rfile.read(length) if length else b""
        simulator, target = self.server.pick(self.path)
        reply = answer(simulator, method, target, self.headers.items(), raw)
        if reply is None:
            self.close_connection = True
            return
        self._send(reply)

    def _send(self, reply: Reply, *, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.payload)))
        if close:
            self.send_header("Connection", "close")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.payload)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a client opening many connections at once would see
    # its SYNs dropped and retried a second later, a delay Meta's servers do not add.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        simulator: GraphSimulator,
        hosts: Mapping[str, GraphSimulator] | None = None,
    ) -> None:
        self.simulator = simulator
        self.hosts = dict(hosts or {})
        super().__init__(address, _Handler)

    def pick(self, target: str) -> tuple[GraphSimulator, str]:
        """The simulator a request target belongs to, and the target it sees (a host's path
        prefix removed)."""
        path = urlsplit(target).path
        for prefix, simulator in self.hosts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return simulator, target[len(prefix) :] or "/"
        return self.simulator, target


class SimulatorServer:
    """A running simulator; use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        simulator: GraphSimulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        hosts: Mapping[str, GraphSimulator] | None = None,
    ) -> None:
        """`hosts` serves more simulators under path prefixes (e.g. "/instagram")."""
        self.simulator = simulator or GraphSimulator()
        self.hosts = dict(hosts or {})
        self._server = _Server((host, port), self.simulator, self.hosts)
        # A short poll: stop() waits for the serving loop to notice, half a second by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": STOP_POLL_SECONDS},
            name="graph-simulator",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (`ig-story-metrics simulate`)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
