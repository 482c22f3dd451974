"""Serve a `GraphSimulator` over real HTTP on a loopback port (port 0 picks a free one)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit

from ig_story_metrics.simulator.api import GraphSimulator, Request

MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silent: access logs would print request lines, and a careless client's token with them."""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        simulator, path = self.server.pick(url.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {}, {"error": {"message": "Request too large", "code": 1}})
            return
        raw = self.rfile.read(length) if length else b""
        form: dict[str, str] = {}
        content_type = self.headers.get("Content-Type", "")
        if raw and "json" in content_type:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {}
            if isinstance(parsed, dict):
                form = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parsed.items()}
        elif raw:
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        request = Request(
            method=method,
            path=path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            form=form,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        fault = simulator.transport_fault(request)
        if fault == "drop":  # close the connection without a word
            self.close_connection = True
            return
        if fault == "slow":
            time.sleep(simulator.faults.slow_seconds)
        if fault == "html":
            self._reply_raw(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            return
        status, headers, body = simulator.handle(request)
        self._reply(status, headers, body)

    def _reply_raw(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _reply(self, status: int, headers: dict[str, str], body: object) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        simulator: GraphSimulator,
        hosts: Mapping[str, GraphSimulator] | None = None,
    ) -> None:
        self.simulator = simulator
        self.hosts = dict(hosts or {})
        super().__init__(address, _Handler)

    def pick(self, path: str) -> tuple[GraphSimulator, str]:
        """The simulator a path belongs to, and the path it sees (a host's prefix removed)."""
        for prefix, simulator in self.hosts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return simulator, path[len(prefix) :] or "/"
        return self.simulator, path


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
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="graph-simulator", daemon=True
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
