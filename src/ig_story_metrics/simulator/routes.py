"""The simulator's routes: the stories listing, a story's insights, and the batch POST.

Each route is a function of the simulator and one request; `api.ROUTES` names them, and tests change
their answers through `GraphSimulator.override(name, fn)`.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ig_story_metrics.simulator import cdn
from ig_story_metrics.simulator.protocol import (
    Request,
    Response,
    graph_error,
    request_key,
    to_json,
    with_headers,
)
from ig_story_metrics.simulator.shapes import BREAKDOWN_OF
from ig_story_metrics.simulator.world import SimStory

if TYPE_CHECKING:
    from ig_story_metrics.simulator.api import GraphSimulator

MAX_BATCH = 50
DEFAULT_PAGE_SIZE = 25  # Meta's default `limit`
VIEWER_THRESHOLD = 5
STORY_METRICS = frozenset(
    {
        "views",
        "reach",
        "replies",
        "shares",
        "total_interactions",
        "follows",
        "profile_visits",
        "reposts",
        "link_clicks",
        "total_views",
        "facebook_views",
        "navigation",
        "profile_activity",
    }
)
DEPRECATED = {
    "impressions": "(#100) Starting from version v22.0 and above, the impressions metric is no "
    "longer supported for the queried media.",
    "exits": "(#100) The Media Insights API does not support the exits metric for this media "
    "product type.",
    "taps_forward": "(#100) The Media Insights API does not support the taps_forward metric for "
    "this media product type.",
    "taps_back": "(#100) The Media Insights API does not support the taps_back metric for this "
    "media product type.",
}
NOT_FOR_STORIES = frozenset({"likes", "comments", "saved", "engagement", "video_views", "plays"})
# What a listing's `timestamp` may hold instead of a date (bad_timestamp_rate), in turn.
BAD_TIMESTAMPS: tuple[object, ...] = (None, "not a date", "9999-12-31T23:59:59+0000", 1732460400)


def unsupported(object_id: str, method: str = "get") -> Response:
    return graph_error(
        400,
        f"Unsupported {method} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        100,
        subcode=33,
        kind="GraphMethodException",
    )


def revoked() -> Response:
    return graph_error(
        400,
        "Error validating access token: The session has been invalidated because the user "
        "changed their password or Facebook has changed the session for security reasons.",
        190,
        subcode=460,
    )


def _gate(
    sim: GraphSimulator, request: Request, route: str, account: str, uid: str
) -> Response | None:
    """Count the call; a revoked token (revoke_after), a throttling burst or a transient error."""
    sim.count(route, account)
    if sim.faults.revoke_after and sim.stats.by_account[account] > sim.faults.revoke_after:
        return revoked()
    return sim.injected(request, account, uid)


def stories(sim: GraphSimulator, request: Request) -> Response:
    ig_user_id = request.params["user"]
    account = sim.world.account_for(ig_user_id)
    denied = sim.authorize(request, account)
    if denied:
        return denied
    if account is None:
        return unsupported(ig_user_id)
    refused = _gate(sim, request, "stories", account, ig_user_id)
    if refused:
        return refused
    headers = sim.usage(ig_user_id)
    try:
        limit = max(1, min(int(request.query.get("limit", DEFAULT_PAGE_SIZE)), 100))
        offset = int(base64.urlsafe_b64decode(request.query.get("after", "") + "==") or b"0")
    except ValueError:
        return graph_error(400, "(#100) Invalid cursor or limit", 100)
    limit = min(limit, sim.page_size)
    if sim.faults.broken_page and offset // limit + 1 >= sim.faults.broken_page:
        return with_headers(
            graph_error(400, "(#100) The after cursor is no longer valid", 100), headers
        )
    live = [s for s in sim.world.live_stories(account) if s.id not in sim.vanished]
    page = live[offset : offset + limit]
    after = offset + len(page)
    duplicate = sim.dice.roll(
        "duplicate", f"{account}:{offset}", sim.faults.duplicate_rate, repeat=False
    )
    if offset and page and duplicate:
        page = [live[offset - 1], *page]  # the previous page's last story, again
    fields = [f for f in request.query.get("fields", "id").split(",") if f]
    data = [
        {k: v for k, v in _listed(sim, s, request).items() if k in fields or k == "id"}
        for s in page
    ]
    body: dict[str, Any] = {"data": data}
    if live:
        body["paging"] = {"cursors": {"before": _cursor(offset), "after": _cursor(after)}}
    if offset + limit < len(live):
        params = dict(request.query)
        params.update(after=_cursor(offset + limit), limit=str(limit))
        params["access_token"] = request.token() or ""  # Meta repeats the token here
        body["paging"]["next"] = (
            f"https://graph.facebook.com{request.path}?{urlencode(params, safe=',')}"
        )
    return 200, headers, body


def _listed(sim: GraphSimulator, story: SimStory, request: Request) -> dict[str, object]:
    """The story's listing item (with its CDN links), with the listing faults of this story."""
    item = {**story.listing(), **cdn.links(sim, story, request)}
    faults, roll = sim.faults, sim.dice.roll
    if roll("timestamp", story.id, faults.bad_timestamp_rate, repeat=False):
        item["timestamp"] = BAD_TIMESTAMPS[sum(map(int, story.id)) % len(BAD_TIMESTAMPS)]
    if roll("caption", story.id, faults.odd_caption_rate, repeat=False):
        item["caption"] = "Flash sale \ud83c"  # a lone surrogate: half an emoji
    return item


def insights(sim: GraphSimulator, request: Request) -> Response:
    media = request.params["media"]
    story = sim.world.story(media)
    denied = sim.authorize(request, story.account if story else None)
    if denied:
        return denied
    now = sim.world.clock()
    if story is None or story.id in sim.vanished or not story.posted_at <= now < story.expires_at:
        return unsupported(media)
    refused = _gate(sim, request, "insights", story.account, story.ig_user_id)
    if refused:
        return refused
    headers = sim.usage(story.ig_user_id)
    faults, roll = sim.faults, sim.dice.roll
    if roll("expire", story.id, faults.expire_rate, repeat=False):
        sim.vanished.add(story.id)  # deleted: gone from the listing from now on
        return with_headers(unsupported(media), headers)
    if roll("unsupported", partial(request_key, request), faults.unsupported_rate):
        return with_headers(unsupported(media), headers)
    metrics = [m for m in request.query.get("metric", "").split(",") if m]
    breakdown = request.query.get("breakdown")
    invalid = _validate(sim, story, metrics, breakdown)
    if invalid:
        return with_headers(invalid, headers)
    plain = story.metrics(now)
    values = {**plain, **story.extra_metrics(now, plain["views"])}
    withheld = breakdown is not None and roll(
        "withheld", f"{story.id}:{breakdown}", faults.withheld_rate, repeat=False
    )
    if values["reach"] < VIEWER_THRESHOLD or withheld:
        message = "(#10) Not enough viewers for the media to show insights"
        return with_headers(graph_error(400, message, 10), headers)
    return 200, headers, {"data": sim.shaper.data(story.id, metrics, values, breakdown)}


def _not_supported(name: str) -> Response:
    return graph_error(
        400,
        f"(#100) The Media Insights API does not support the {name} metric for this media "
        "product type.",
        100,
    )


def _validate(
    sim: GraphSimulator, story: SimStory, metrics: list[str], breakdown: str | None
) -> Response | None:
    if not metrics:
        return graph_error(400, "(#100) The parameter metric is required", 100)
    for i, name in enumerate(metrics):
        if name in sim.faults.rejected_metrics and sim.dice.roll(
            "reject", f"{story.id}:{name}", sim.faults.reject_share, repeat=False
        ):
            return _not_supported(name)
        if name in DEPRECATED:
            return graph_error(400, DEPRECATED[name], 100)
        if name in NOT_FOR_STORIES:
            return _not_supported(name)
        if name not in STORY_METRICS:
            return graph_error(
                400,
                f"(#100) metric[{i}] must be one of the following values: "
                + ", ".join(sorted(STORY_METRICS)),
                100,
            )
        if name == "facebook_views" and not story.shared_to_facebook:
            return graph_error(
                400,
                "(#100) The facebook_views metric is only available for stories shared to "
                "Facebook.",
                100,
                subcode=2207086,
            )
    if breakdown is not None and (len(metrics) != 1 or BREAKDOWN_OF.get(metrics[0]) != breakdown):
        return graph_error(500, "An unknown error has occurred.", 1)
    return None


def batch(sim: GraphSimulator, request: Request) -> Response:
    denied = sim.authorize(request, None)
    if denied:
        return denied
    if sim.faults.refuse_batches:
        return graph_error(
            400, "(#12) Batch requests are deprecated for versions v28.0 and higher", 12
        )
    try:
        ops = json.loads(request.form.get("batch", ""))
    except ValueError:
        return graph_error(400, "(#100) The parameter batch must be a JSON array", 100)
    if not isinstance(ops, list) or not ops:
        return graph_error(400, "(#100) The parameter batch must be a JSON array", 100)
    if len(ops) > MAX_BATCH:
        return graph_error(
            400,
            "Too many requests in batch message. Maximum batch size is 50",
            1,
            kind="GraphBatchException",
        )
    with sim.lock:
        sim.stats.batches += 1
        sim.stats.operations += len(ops)
    include_headers = request.form.get("include_headers", "true") != "false"
    answers = [_operation(sim, request, op, include_headers) for op in ops]
    return (
        200,
        {},
        [
            None if sim.dice.roll("null", partial(json.dumps, op), sim.faults.null_rate) else answer
            for op, answer in zip(ops, answers, strict=True)
        ],
    )


def _operation(
    sim: GraphSimulator, outer: Request, op: object, include_headers: bool
) -> dict[str, Any]:
    """One batch operation, answered through the same routes as a plain request."""
    if not isinstance(op, dict) or not isinstance(op.get("relative_url"), str):
        status, headers, body = graph_error(400, "(#100) Missing relative_url", 100)
    else:
        url = urlsplit("/" + op["relative_url"].lstrip("/"))
        query = _query(url.query)
        token = query.get("access_token") or outer.token()
        # the outer request's host: a listing's media links point to the CDN on it
        host = {"host": outer.headers["host"]} if "host" in outer.headers else {}
        inner = Request(
            method=str(op.get("method", "GET")).upper(),
            path=url.path,
            query=query,
            form={},
            headers={"authorization": f"Bearer {token}", **host} if token else host,
        )
        status, headers, body = sim.handle(inner, top_level=False)
    answer: dict[str, Any] = {"code": status, "body": to_json(body).decode()}
    if include_headers:
        answer["headers"] = [
            {"name": "Content-Type", "value": "text/javascript; charset=UTF-8"},
            *({"name": k, "value": v} for k, v in headers.items()),
        ]
    return answer


@functools.lru_cache(maxsize=1024)
def _query(text: str) -> Mapping[str, str]:
    """An operation's query string, parsed once per distinct text (read-only): a fleet's tens of
    thousands of insights operations share a handful (the story is in the path, not the query)."""
    return MappingProxyType(dict(parse_qsl(text, keep_blank_values=True)))


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")
