"""A hostile fake Graph API: a tiny route table over real HTTP on a free loopback port.

Each account is a list of story listing items and the insights values of each story; a test then
breaks one account or story in the way it wants to try: a body sent as `Content-Encoding: gzip` that
is not gzip, a caption with a lone surrogate (valid JSON: `"\\ud800"`), a timestamp in year 9999,
a metric of 2**70, a message echoing the caller's token. The simulator is the faithful fake; this one
only lies, in exactly the way each test asks.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

Reply = tuple[int, dict[str, str], bytes]
VERSION = re.compile(r"^/v\d+\.\d+")


def reply(body: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON answer; `json.dumps` escapes a lone surrogate as `\\udXXX`, as Meta's JSON may."""
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


def graph_error(message: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code}}


def bad_gzip(graph: HostileGraph, path: str, *_: object) -> Reply:
    """An answer that says `Content-Encoding: gzip` over a body that is not gzip (as an operation
    of a batch, whose body is a JSON string: a body that is not JSON, see `_as_operation`)."""
    return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, b'{"data": []}'


def _as_operation(answer: Reply) -> dict[str, Any]:
    """A route's answer as a batch operation's; a body claiming gzip stays unreadable."""
    status, headers, payload = answer
    body = payload.decode("utf-8", "replace")
    if headers.get("Content-Encoding") == "gzip":
        body = "\x1f\x8b\x08" + body  # gzip's magic bytes, then no gzip: not JSON either
    return {"code": status, "headers": [], "body": body}


def insights_item(name: str, value: object, breakdown: str | None) -> dict[str, Any]:
    """One metric as Meta sends it; a breakdown's whole value in one part (Meta omits zero rows)."""
    item: dict[str, Any] = {"name": name, "period": "lifetime", "values": [{"value": value}]}
    if breakdown:
        part = "tap_forward" if breakdown == "story_navigation_action_type" else "other"
        results = [{"dimension_values": [part], "value": value}]
        item["total_value"] = {
            "value": value,
            "breakdowns": [{"dimension_keys": [breakdown], "results": results}],
        }
    return item


@dataclass
class HostileStory:
    """One story: its listing item (posted an hour ago by default), the values of its metrics
    (7 unless set), and an optional answer that replaces its insights."""

    id: str
    timestamp: str = field(
        default_factory=lambda: f"{datetime.now(UTC) - timedelta(hours=1):%Y-%m-%dT%H:%M:%S+0000}"
    )
    caption: str | None = "a story"
    values: dict[str, object] = field(default_factory=dict)
    insights_answer: tuple[int, dict[str, Any]] | None = None  # replaces every insights answer

    def listing(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "timestamp": self.timestamp}
        item.update(media_type="IMAGE", media_product_type="STORY", caption=self.caption)
        return item

    def insights(self, metrics: list[str], breakdown: str | None) -> tuple[int, object]:
        if self.insights_answer is not None:
            return self.insights_answer
        data = [insights_item(m, self.values.get(m, 7), breakdown) for m in metrics]
        return 200, {"data": data}


Route = Callable[["HostileGraph", str, Mapping[str, str], Mapping[str, str]], Reply]


class HostileGraph:
    """Accounts (ig_user_id -> stories) served as `/{id}/stories` and the batch POST; `routes`
    overrides a path (exact, without the version) with a function returning raw bytes, asked for
    by a GET or by an operation of a batch."""

    def __init__(self, accounts: Mapping[str, list[HostileStory]]) -> None:
        self.accounts = dict(accounts)
        self.stories = {s.id: s for stories in accounts.values() for s in stories}
        self.routes: dict[str, Route] = {}
        self.calls: list[str] = []
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> HostileGraph:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(
        self, method: str, path: str, query: Mapping[str, str], form: Mapping[str, str]
    ) -> Reply:
        bare = "/" + VERSION.sub("", path).strip("/")
        self.calls.append(f"{method} {bare}")
        if bare in self.routes:
            return self.routes[bare](self, bare, query, form)
        if method == "POST":
            return reply([self._operation(op) for op in json.loads(form["batch"])])
        user = bare.strip("/").split("/")[0]
        if bare.endswith("/stories") and user in self.accounts:
            return reply({"data": [s.listing() for s in self.accounts[user]]})
        return reply(graph_error(f"Unknown path components: {bare}", 2500), 400)

    def _operation(self, op: Mapping[str, str]) -> dict[str, Any]:
        """One operation of a batch: a route's answer, a listing, or a story's insights."""
        url = urlsplit("/" + op["relative_url"])
        query = dict(parse_qsl(url.query))
        bare = "/" + VERSION.sub("", url.path).strip("/")
        self.calls.append(f"OP {bare}")
        if bare in self.routes:
            return _as_operation(self.routes[bare](self, bare, query, {}))
        user = bare.strip("/").split("/")[0]
        if bare.endswith("/stories") and user in self.accounts:
            listing = {"data": [s.listing() for s in self.accounts[user]]}
            return {"code": 200, "headers": [], "body": json.dumps(listing)}
        story = self.stories.get(user)
        if story is None:
            status, body = 400, graph_error("Unsupported get request.", 100)
        else:
            status, body = story.insights(query["metric"].split(","), query.get("breakdown"))
        return {"code": status, "headers": [], "body": json.dumps(body)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        status, headers, payload = self.server.graph.answer(
            method, url.path, dict(parse_qsl(url.query)), dict(parse_qsl(raw))
        )
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, graph: HostileGraph) -> None:
        self.graph = graph
        super().__init__(("127.0.0.1", 0), _Handler)
