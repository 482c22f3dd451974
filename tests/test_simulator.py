"""The simulator keeps the Graph API's rules, checked with a plain HTTP client over a real socket."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ig_story_metrics.cli import app
from ig_story_metrics.simulator import (
    SEED_ACCOUNTS,
    Answer,
    Faults,
    Request,
    Response,
    SimulatorServer,
    World,
)
from ig_story_metrics.simulator.protocol import to_json
from ig_story_metrics.simulator.server import MAX_BODY

from .conftest import (
    IN_PROCESS_URL,
    NOW,
    SECRET_TOKEN,
    SimTransport,
    make_server,
    make_simulator,
)

AUTH = {"Authorization": f"Bearer {SECRET_TOKEN}"}


def live_story(sim: SimulatorServer, min_reach: int = 5) -> str:
    world = sim.simulator.world
    return next(s.id for s in world.live_stories("NPI") if s.metrics(NOW)["reach"] >= min_reach)


def get(sim: SimulatorServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{sim.url}/v25.0/{path}", params=params, headers=AUTH)


@pytest.mark.parametrize(
    ("metric", "fragment"),
    [
        ("impressions", "impressions metric is no longer supported"),
        ("reach,taps_forward", "taps_forward metric"),
        ("reach,likes", "likes metric"),
        ("reach,nonsense", "metric[1] must be one of"),
    ],
)
def test_invalid_metric_fails_the_whole_call(
    sim: SimulatorServer, metric: str, fragment: str
) -> None:
    """A deprecated, foreign or unknown metric fails the whole insights call with #100."""
    response = get(sim, f"{live_story(sim)}/insights", metric=metric)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert fragment in error["message"]


def test_breakdown_only_with_its_metric(sim: SimulatorServer) -> None:
    """A breakdown with a metric that does not support it is an error, with its own metric it works."""
    story = live_story(sim)
    bad = get(sim, f"{story}/insights", metric="reach", breakdown="story_navigation_action_type")
    assert bad.status_code >= 400
    good = get(
        sim, f"{story}/insights", metric="navigation", breakdown="story_navigation_action_type"
    )
    item = good.json()["data"][0]
    parts = item["total_value"]["breakdowns"][0]["results"]
    assert all(r["dimension_values"][0].islower() for r in parts)
    assert sum(r["value"] for r in parts) == item["values"][0]["value"]


def test_not_enough_viewers(sim: SimulatorServer) -> None:
    """A story with fewer than 5 viewers answers (#10) Not enough viewers, HTTP 400."""
    world = sim.simulator.world
    small = next(
        s.id for n in SEED_ACCOUNTS for s in world.live_stories(n) if s.metrics(NOW)["reach"] < 5
    )
    response = get(sim, f"{small}/insights", metric="reach")
    assert response.status_code == 400
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": 10,
        "message": "(#10) Not enough viewers for the media to show insights",
    }


def test_tokens_are_checked(sim: SimulatorServer) -> None:
    """No token: #104; an unknown token: #190."""
    path = f"{sim.url}/v25.0/{SEED_ACCOUNTS['NPI']}/stories"
    assert httpx.get(path).json()["error"]["code"] == 104
    wrong = httpx.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.json()["error"]["code"] == 190


def test_batch_answers_each_operation_with_a_json_string_body(sim: SimulatorServer) -> None:
    """A batch answers one {code, headers, body: "<json>"} per operation, in order."""
    story = live_story(sim)
    ops = [
        {"method": "GET", "relative_url": f"{story}/insights?metric=reach"},
        {"method": "GET", "relative_url": f"{story}/insights?metric=impressions"},
    ]
    response = httpx.post(
        f"{sim.url}/v25.0/", data={"access_token": SECRET_TOKEN, "batch": json.dumps(ops)}
    )
    first, second = response.json()
    assert first["code"] == 200
    assert json.loads(first["body"])["data"][0]["name"] == "reach"
    assert any(h["name"] == "X-Business-Use-Case-Usage" for h in first["headers"])
    assert second["code"] == 400
    assert json.loads(second["body"])["error"]["code"] == 100


def test_batch_of_more_than_fifty_is_refused(sim: SimulatorServer) -> None:
    """51 operations in one batch are refused as a whole."""
    ops = [{"method": "GET", "relative_url": f"{live_story(sim)}/insights?metric=reach"}] * 51
    response = httpx.post(
        f"{sim.url}/v25.0/", data={"access_token": SECRET_TOKEN, "batch": json.dumps(ops)}
    )
    assert response.status_code == 400
    assert "Maximum batch size is 50" in response.json()["error"]["message"]


def test_usage_headers_are_sent(sim: SimulatorServer) -> None:
    """Every answer carries X-Business-Use-Case-Usage keyed by the account, and X-App-Usage."""
    response = get(sim, f"{SEED_ACCOUNTS['LT']}/stories")
    usage = json.loads(response.headers["x-business-use-case-usage"])
    entry = usage[SEED_ACCOUNTS["LT"]][0]
    assert entry["type"] == "instagram"
    assert {"call_count", "total_cputime", "total_time", "estimated_time_to_regain_access"} <= set(
        entry
    )
    assert "call_count" in json.loads(response.headers["x-app-usage"])


def test_world_is_deterministic_and_stories_live_24_hours() -> None:
    """Same seed, same stories; a story is live for 24 hours and its metrics only grow."""
    a, b, other = World(seed=7), World(seed=7), World(seed=8)
    assert [s.id for s in a.live_stories("NPI", NOW)] == [s.id for s in b.live_stories("NPI", NOW)]
    assert [s.posted_at for s in a.live_stories("NPI", NOW)] != [
        s.posted_at for s in other.live_stories("NPI", NOW)
    ]
    story = a.live_stories("NPI", NOW)[-1]
    assert story not in a.live_stories("NPI", story.posted_at + timedelta(hours=24))
    assert story in a.live_stories("NPI", story.posted_at + timedelta(hours=23, minutes=59))
    early = story.metrics(story.posted_at + timedelta(hours=1))
    late = story.metrics(story.posted_at + timedelta(hours=20))
    assert all(late[k] >= early[k] for k in early)
    assert a.story(story.id) == story


def test_named_route_override_wraps_replaces_and_is_removed(sim: SimulatorServer) -> None:
    """`override(name, fn)` changes a route's answer (plain and inside a batch) until removed."""
    story = live_story(sim)
    truth = sim.simulator.truth(story)
    assert truth is not None

    def double(request: Request, answer: Answer) -> Response:
        status, headers, body = answer()
        body["data"][0]["values"][0]["value"] *= 2
        return status, headers, body

    remove = sim.simulator.override("insights", double)
    doubled = get(sim, f"{story}/insights", metric="reach").json()
    assert doubled["data"][0]["values"][0]["value"] == 2 * truth["reach"]
    ops = [{"method": "GET", "relative_url": f"{story}/insights?metric=reach"}]
    batch = httpx.post(
        f"{sim.url}/v25.0/", data={"access_token": SECRET_TOKEN, "batch": json.dumps(ops)}
    ).json()
    assert json.loads(batch[0]["body"])["data"][0]["values"][0]["value"] == 2 * truth["reach"]
    remove()
    plain = get(sim, f"{story}/insights", metric="reach").json()
    assert plain["data"][0]["values"][0]["value"] == truth["reach"]
    sim.simulator.override("stories", lambda request, answer: (200, {}, {"data": []}))
    assert get(sim, f"{SEED_ACCOUNTS['NPI']}/stories").json() == {"data": []}
    with pytest.raises(ValueError, match="unknown route"):
        sim.simulator.override("nope", double)


def _navigation(faults: Faults) -> dict[str, Any]:
    with make_server(faults=faults) as server:
        story = live_story(server, min_reach=100)
        answer = get(
            server,
            f"{story}/insights",
            metric="navigation",
            breakdown="story_navigation_action_type",
        )
    item: dict[str, Any] = answer.json()["data"][0]
    return item


def test_breakdown_shapes_are_served_on_request() -> None:
    """Breakdowns without total, without dimension_keys, without breakdowns, in odd case."""
    no_total = _navigation(Faults(no_total_rate=1.0))
    assert "values" not in no_total
    assert "value" not in no_total["total_value"]
    assert no_total["total_value"]["breakdowns"][0]["results"]
    no_keys = _navigation(Faults(no_dimension_keys_rate=1.0))["total_value"]["breakdowns"][0]
    assert "dimension_keys" not in no_keys
    assert no_keys["results"]
    assert "breakdowns" not in _navigation(Faults(no_breakdown_rate=1.0))["total_value"]
    odd = _navigation(Faults(odd_case_rate=1.0))["total_value"]["breakdowns"][0]["results"]
    assert all(not r["dimension_values"][0].islower() for r in odd)


def test_unreadable_values_are_served_on_request() -> None:
    """A metric left out, `"values": []`, a string value, 2**70: each on request."""
    for faults, check in (
        (Faults(missing_metric_rate=1.0), lambda data: data == []),
        (Faults(empty_values_rate=1.0), lambda data: data[0]["values"] == []),
        (
            Faults(string_value_rate=1.0),
            lambda data: isinstance(data[0]["values"][0]["value"], str),
        ),
        (Faults(huge_value_rate=1.0), lambda data: data[0]["values"][0]["value"] == 2**70),
    ):
        with make_server(faults=faults) as server:
            data = get(server, f"{live_story(server)}/insights", metric="reach").json()["data"]
        assert check(data), faults


def test_fault_options_are_simulate_options() -> None:
    """Every Faults field is an option of `ig-story-metrics simulate`, with its help text."""
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for spec in dataclasses.fields(Faults):
        if spec.name != "seed":
            flag = spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")
            assert flag in result.output, flag


def _exchanges(client: httpx.Client, story: str) -> list[tuple[object, ...]]:
    """A fixed sequence of requests of every form the HTTP layer handles, and what came back."""
    ops = json.dumps([{"method": "GET", "relative_url": f"{story}/insights?metric=reach,views"}])
    user = SEED_ACCOUNTS["NPI"]
    requests = [
        client.build_request("GET", f"v25.0/{user}/stories", params={"limit": "2"}, headers=AUTH),
        client.build_request("GET", f"v25.0/{user}/stories", params={"access_token": SECRET_TOKEN}),
        client.build_request("GET", f"v25.0/{story}/insights?metric=reach", headers=AUTH),
        client.build_request("POST", "v25.0/", data={"access_token": SECRET_TOKEN, "batch": ops}),
        client.build_request(
            "POST", "v25.0/", json={"access_token": SECRET_TOKEN, "batch": json.loads(ops)}
        ),
        client.build_request("POST", "v25.0/", content=b"x" * (MAX_BODY + 1)),
        client.build_request("GET", "v25.0/nowhere", headers=AUTH),
    ]
    seen: list[tuple[object, ...]] = []
    for request in requests * 3:  # again and again: the fault dice roll per attempt
        try:
            response = client.send(request)
        except httpx.TransportError as exc:
            seen.append((type(exc).__name__,))
            continue
        kept = ("content-type", "x-app-usage", "x-business-use-case-usage")
        headers = {k: response.headers.get(k) for k in kept}
        seen.append((response.status_code, headers, response.content))
    return seen


def test_the_in_process_transport_answers_exactly_as_the_http_server() -> None:
    """The same requests (query and header tokens, form and JSON batch bodies, an oversized body,
    an unknown path) with drops and HTML pages give the same replies and statistics over a socket
    and through `SimTransport`."""
    faults = Faults(seed=1, drop_rate=0.2, html_rate=0.2, null_rate=0.3)
    with make_server(faults=faults) as server, httpx.Client(base_url=server.url) as client:
        story = live_story(server)
        over_http = _exchanges(client, story)
    transport = SimTransport(make_simulator(faults=faults))
    with httpx.Client(base_url=IN_PROCESS_URL, transport=transport) as client:
        in_process = _exchanges(client, story)
    assert in_process == over_http
    assert {"RemoteProtocolError", 502, 413} <= {outcome[0] for outcome in over_http}
    assert transport.simulator.stats == server.simulator.stats


def test_bodies_are_compact_json_that_reads_back_as_written() -> None:
    """The simulator writes bodies with orjson, and with the standard library what orjson refuses:
    a spoiled 2**70 stays an integer literal, a lone surrogate is escaped as Meta escapes it."""
    plain = {"data": [{"name": "reach", "values": [{"value": 12}]}], "caption": "café ☕"}
    written = to_json(plain)
    assert written == json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(to_json({"value": 2**70})) == {"value": 2**70}
    assert b"1180591620717411303424" in to_json({"value": 2**70})
    odd = to_json({"caption": "Flash sale \ud83c"})
    assert odd == b'{"caption":"Flash sale \\ud83c"}'
    assert json.loads(odd) == {"caption": "Flash sale \ud83c"}


def test_the_package_gives_each_public_name_from_its_module_when_first_read() -> None:
    """simulator/__init__.py imports its parts when a name is read (the CLI starts without them);
    every name of __all__ is the defining module's own object, and a wrong name fails as usual."""
    package = importlib.import_module("ig_story_metrics.simulator")
    homes = {"api", "identity", "protocol", "server", "world", "faults"}
    for name in package.__all__:
        value = getattr(package, name)
        owners = [
            h
            for h in homes
            if getattr(importlib.import_module(f"{package.__name__}.{h}"), name, None) is value
        ]
        assert owners or name == "simulator_server", name
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        package.Nothing  # noqa: B018
    probe = (
        "import sys, ig_story_metrics.simulator as s\n"
        "print('ig_story_metrics.simulator.api' in sys.modules, s.Faults.__name__)\n"
        "print(s.GraphSimulator.__name__, 'ig_story_metrics.simulator.api' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines() == ["False Faults", "GraphSimulator True"], done.stderr
