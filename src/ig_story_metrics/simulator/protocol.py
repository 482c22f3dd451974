"""The request and response a simulated route handles, and Meta's error body."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

Response = tuple[int, dict[str, str], Any]
Answer = Callable[[], Response]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as a route sees it; `params` holds the path's named parts (`user`, `media`)."""

    method: str
    path: str
    query: Mapping[str, str]
    form: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    params: Mapping[str, str] = field(default_factory=dict)

    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip()
        return self.query.get("access_token") or self.form.get("access_token")


def graph_error(
    status: int,
    message: str,
    code: int,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
) -> Response:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "Sim" + base64.b32encode(message.encode()[:10]).decode().rstrip("=")
    return status, {}, {"error": error}


Override = Callable[[Request, Answer], Response]


def to_json(value: object) -> bytes:
    """A body as Meta writes it: compact UTF-8 JSON. orjson (a fleet's run has the simulator
    write tens of thousands of bodies), the standard library for what orjson refuses (an integer
    past 64 bits such as a spoiled 2**70; text with a lone surrogate, escaped as \\udXXX)."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped
        return json.dumps(value, separators=(",", ":")).encode()


def request_key(request: Request) -> str:
    """A request's identity for the dice: method, path, query and form, without credentials."""
    query = sorted((k, v) for k, v in request.query.items() if k != "access_token")
    form = sorted((k, v) for k, v in request.form.items() if k != "access_token")
    return json.dumps([request.method, request.path, query, form])


def lazy_request_key(request: Request) -> Callable[[], str]:
    """`request_key(request)`, made on the first call and kept: the dice ask for it only when a
    fault's rate is above 0 (a closure, not `functools.cache`: ten times cheaper to make, and a
    fleet's run makes one per operation)."""
    made: list[str] = []

    def key() -> str:
        if not made:
            made.append(request_key(request))
        return made[0]

    return key


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    """The same answer, with these headers (an error that still reports usage)."""
    return response[0], {**response[1], **headers}, response[2]
