"""A local fake of Secret Manager's REST API (v1), on a loopback port.

Google ships no Secret Manager emulator, so this is the one mock of the token tests: the real
`google-cloud-secret-manager` client (REST transport, anonymous credentials) talks to it over HTTP.
It serves what the tool uses, with the real API's paths and JSON field names:

    POST /v1/projects/P/secrets/S:addVersion      {"payload": {"data": b64, "dataCrc32c": "..."}}
    GET  /v1/projects/P/secrets/S/versions/latest  the newest version's metadata
    GET  /v1/projects/P/secrets/S/versions/N:access

A secret must be created first (`create()`), as with `gcloud secrets create`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c

SECRET = r"/v1/(?P<secret>projects/[^/]+/secrets/[^/:]+)"
ADD = re.compile(SECRET + r":addVersion$")
LATEST = re.compile(SECRET + r"/versions/latest$")
ACCESS = re.compile(SECRET + r"/versions/(?P<n>\d+):access$")


class FakeSecretManager:
    """Secrets and their versions in memory; `with FakeSecretManager() as fake: fake.host`."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.versions: dict[str, list[tuple[bytes, datetime]]] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def create(self, secret: str, *values: tuple[bytes, datetime]) -> None:
        with self._lock:
            self.versions[secret] = list(values)

    def latest(self, secret: str) -> bytes:
        with self._lock:
            return self.versions[secret][-1][0]

    def __enter__(self) -> FakeSecretManager:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(f"{method} {path}")
            for pattern, want in ((ADD, "POST"), (LATEST, "GET"), (ACCESS, "GET")):
                match = pattern.match(path)
                if match and method == want:
                    return self._route(pattern, match, body)
        return 404, _error(404, f"no such method: {method} {path}")

    def _route(
        self, pattern: re.Pattern[str], match: re.Match[str], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        secret = match["secret"]
        versions = self.versions.get(secret)
        if versions is None:
            return 404, _error(404, f"Secret [{secret}] not found or has no versions.")
        if pattern is ADD:
            payload = body.get("payload") or {}
            data = base64.b64decode(payload.get("data", ""))
            if int(payload.get("dataCrc32c", -1)) != google_crc32c.value(data):
                return 400, _error(400, "Checksum mismatch")
            versions.append((data, self.clock()))
            return 200, _version(secret, len(versions), versions[-1][1])
        if not versions:
            return 404, _error(404, f"Secret [{secret}] not found or has no versions.")
        if pattern is LATEST:
            return 200, _version(secret, len(versions), versions[-1][1])
        n = int(match["n"])
        if not 0 < n <= len(versions):
            return 404, _error(404, f"Secret Version [{secret}/versions/{n}] not found.")
        data = versions[n - 1][0]
        return 200, {
            "name": f"{secret}/versions/{n}",
            "payload": {
                "data": base64.b64encode(data).decode(),
                "dataCrc32c": str(google_crc32c.value(data)),
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Silent."""

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                status, answer = fake.answer(method, self.path.split("?")[0], body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler


def _version(secret: str, n: int, created: datetime) -> dict[str, Any]:
    return {
        "name": f"{secret}/versions/{n}",
        "createTime": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "state": "ENABLED",
    }


def _error(code: int, message: str) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND"}.get(code, "UNKNOWN")
    return {"error": {"code": code, "message": message, "status": status}}
