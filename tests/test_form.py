"""The batch POST's form body: byte for byte what `urllib.parse.urlencode` makes, only faster;
and the JSON reader: orjson's values where it reads a body, the standard library's otherwise."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

from hypothesis import given, settings
from hypothesis import strategies as st

from ig_story_metrics.graph.errors import parse_json
from ig_story_metrics.graph.form import encode, operations, quote
from ig_story_metrics.model.numbers import as_count, as_int

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@settings(max_examples=2000, deadline=None)
@given(st.dictionaries(text, text, max_size=5))
def test_a_form_is_encoded_as_urlencode_encodes_it(form: dict[str, str]) -> None:
    body = encode(form)
    assert body == urlencode(form).encode("ascii")
    assert dict(parse_qsl(body.decode("ascii"), keep_blank_values=True)) == form


def test_a_batch_form_round_trips() -> None:
    ops = [
        {"method": "GET", "relative_url": f"1806{n}/insights?metric=views,reach"} for n in range(50)
    ]
    form = {"access_token": "EAAtoken", "batch": json.dumps(ops), "include_headers": "true"}
    assert encode(form) == urlencode(form).encode("ascii")


def test_bodies_read_the_same_values_as_the_standard_library() -> None:
    """Where orjson and `json` would differ (integers past 64 bits, a lone surrogate, NaN,
    infinity, deep nesting), what we keep is the same: no value invented."""
    for value in (2**70, 2**64, 2**64 - 1, 2**63, 2**63 - 1, -(2**63), 10**400):
        body = json.dumps({"value": value})
        parsed = parse_json(body)
        assert isinstance(parsed, dict)
        assert as_int(parsed["value"]) == as_int(json.loads(body)["value"])
        assert as_count(parsed["value"]) == as_count(json.loads(body)["value"])
    assert parse_json('{"caption": "\\ud800 x"}') == {"caption": "\ud800 x"}
    nan = parse_json('{"v": NaN}')
    assert isinstance(nan, dict)
    assert nan["v"] != nan["v"]  # NaN, as json reads it
    assert parse_json('{"v": 1e400}') == {"v": float("inf")}
    assert parse_json(b"\xff") is None
    assert parse_json("<html>") is None
    assert parse_json("") is None
    assert parse_json("[" * 500 + "]" * 500) == json.loads("[" * 500 + "]" * 500)
    # past what either parser can nest: unreadable, as a broken body is (it was a crash)
    assert parse_json("[" * 100_000 + "]" * 100_000) is None


url_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
story_urls = st.builds(
    lambda story, query: f"{story}/insights?{query}",
    st.integers(min_value=0, max_value=10**20),
    st.sampled_from(
        ["metric=views,reach", "metric=navigation&breakdown=story_navigation_action_type"]
    ),
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.one_of(story_urls, url_text, st.builds("/".join, st.lists(url_text))), max_size=8)
)
def test_a_batch_is_quoted_as_its_json_would_be(urls: list[str]) -> None:
    """`operations` gives the bytes `quote(json.dumps(ops))` gives, whatever the URLs: an id and
    a query, or any text at all (quotes, backslashes, slashes, controls, non-ASCII)."""
    ops = [{"method": "GET", "relative_url": url} for url in urls]
    assert operations(urls) == quote(json.dumps(ops, separators=(",", ":")))
    form = {"access_token": "EAA token", "batch": operations(urls), "include_headers": "true"}
    plain = {**form, "batch": json.dumps(ops, separators=(",", ":"))}
    assert encode(form, frozenset({"batch"})) == urlencode(plain).encode("ascii")
