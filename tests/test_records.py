"""The snapshot row: parsing insights payloads, the schemas, and a Parquet round trip."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ig_story_metrics.graph.payload import _value, parse_insights
from ig_story_metrics.model.metrics import METRIC_COLUMNS
from ig_story_metrics.model.snapshot import SNAPSHOTS, STATUSES, snapshot_row
from ig_story_metrics.model.story import Story, parse_timestamp
from ig_story_metrics.storage import Lake
from ig_story_metrics.storage.local import LocalBackend
from ig_story_metrics.storage.merge import unite

# Meta's documented navigation sample (graph-api.md 2.3).
NAVIGATION = {
    "data": [
        {
            "name": "navigation",
            "period": "lifetime",
            "values": [{"value": 25}],
            "total_value": {
                "value": 25,
                "breakdowns": [
                    {
                        "dimension_keys": ["story_navigation_action_type"],
                        "results": [
                            {"dimension_values": ["tap_forward"], "value": 19},
                            {"dimension_values": ["tap_back"], "value": 4},
                            {"dimension_values": ["tap_exit"], "value": 1},
                            {"dimension_values": ["swipe_forward"], "value": 1},
                        ],
                    }
                ],
            },
            "id": "17969782069736348/insights/navigation/lifetime",
        }
    ]
}


def test_plain_metrics_in_values_shape() -> None:
    """`values[0].value` is read for every plain metric; unknown new metrics are ignored."""
    payload = {
        "data": [
            {"name": "views", "period": "lifetime", "values": [{"value": 1200}]},
            {"name": "reach", "values": [{"value": 1100}]},
            {"name": "brand_new_metric", "values": [{"value": 7}]},
        ]
    }
    assert parse_insights(payload) == {"views": 1200, "reach": 1100}


def test_plain_metrics_in_total_value_shape() -> None:
    """A metric that only carries `total_value.value` is read from there."""
    payload = {"data": [{"name": "views", "total_value": {"value": 42}}]}
    assert parse_insights(payload) == {"views": 42}


def test_navigation_breakdown_parts_add_up() -> None:
    """The documented navigation sample gives the total and four parts that add up to it."""
    values = parse_insights(NAVIGATION)
    assert values == {
        "navigation": 25,
        "taps_forward": 19,
        "taps_back": 4,
        "taps_exit": 1,
        "swipe_forward": 1,
    }


def test_breakdown_values_in_upper_case_and_missing_parts() -> None:
    """Breakdown values are matched in any case; a part Meta leaves out is 0 when the total is known."""
    payload = {
        "data": [
            {
                "name": "profile_activity",
                "values": [{"value": 4}],
                "total_value": {
                    "value": 4,
                    "breakdowns": [
                        {
                            "dimension_keys": ["action_type"],
                            "results": [
                                {"dimension_values": ["EMAIL"], "value": 1},
                                {"dimension_values": ["Bio_Link_Clicked"], "value": 3},
                            ],
                        }
                    ],
                },
            }
        ]
    }
    values = parse_insights(payload)
    assert values["profile_activity"] == 4
    assert values["profile_activity_email"] == 1
    assert values["profile_activity_bio_link_clicked"] == 3
    assert values["profile_activity_call"] == 0
    assert values["profile_activity_text"] == 0


def test_breakdown_without_total_leaves_parts_null() -> None:
    """Without a total, the parts are unknown: null, never zero."""
    payload = {"data": [{"name": "navigation", "values": []}]}
    values = parse_insights(payload)
    assert values["navigation"] is None
    assert values["taps_forward"] is None


def _navigation(total: dict[str, Any], **item: Any) -> dict[str, Any]:
    return {"data": [{"name": "navigation", "total_value": total, **item}]}


RESULTS = [
    {"dimension_values": ["TAP_FORWARD"], "value": 19},
    {"dimension_values": ["Tap_Back"], "value": 4},
    {"dimension_values": ["tap_exit"], "value": 2},
]


def test_breakdown_without_its_total_is_the_sum_of_its_parts() -> None:
    """No `value`, no `values`: total = sum of the parts (any case); a left-out part is 0."""
    payload = _navigation(
        {"breakdowns": [{"dimension_keys": ["story_navigation_action_type"], "results": RESULTS}]}
    )
    assert parse_insights(payload) == {
        "navigation": 25,
        "taps_forward": 19,
        "taps_back": 4,
        "taps_exit": 2,
        "swipe_forward": 0,
    }


def test_breakdown_without_dimension_keys_is_single_dimension() -> None:
    """Results without `dimension_keys` are the metric's own (single) dimension."""
    payload = _navigation({"value": 25, "breakdowns": [{"results": RESULTS}]})
    assert parse_insights(payload)["taps_back"] == 4
    assert parse_insights(payload)["swipe_forward"] == 0


def test_total_without_breakdown_has_unknown_parts() -> None:
    """A total and no breakdown: the parts are null, unless the total is 0."""
    assert parse_insights(_navigation({"value": 25}))["taps_forward"] is None
    assert parse_insights(_navigation({"value": 25}, values=[{"value": 25}]))["navigation"] == 25
    assert parse_insights(_navigation({"value": 0}))["taps_exit"] == 0


def test_values_that_are_not_counts_are_refused() -> None:
    """ "123", 1.5, -3, 2**70 and true are not counts: None, never a guess."""
    for bad in ("123", 1.5, -3, 2**70, True):
        assert parse_insights({"data": [{"name": "reach", "values": [{"value": bad}]}]}) == {
            "reach": None
        }
    unreadable = [*RESULTS[:2], {"dimension_values": ["tap_exit"], "value": "2"}]
    payload = _navigation({"breakdowns": [{"results": unreadable}]})
    values = parse_insights(payload)
    assert values["taps_exit"] is None
    assert values["navigation"] is None  # the sum of the parts is unknown
    assert values["taps_forward"] == 19


def test_malformed_payloads_do_not_crash() -> None:
    """Wrongly typed elements are skipped: the parse is tolerant, never a crash."""
    for payload in (None, [], "x", {"data": "x"}, {"data": [1, None, {"name": 3}]}):
        assert parse_insights(payload) == {}
    odd = {"data": [{"name": "reach", "values": [{"value": "12"}]}, {"name": "views"}]}
    assert parse_insights(odd) == {"reach": None, "views": None}


def test_json_schema_is_derived_from_the_columns() -> None:
    """Every column is in the JSON schema with its nullability; required = the non-null columns."""
    schema = SNAPSHOTS.json_schema()
    assert list(schema["properties"]) == list(SNAPSHOTS.column_names)
    assert schema["properties"]["views"]["type"] == ["integer", "null"]
    assert schema["properties"]["posted_at"]["format"] == "date-time"
    assert "story_id" in schema["required"]
    assert "caption" not in schema["required"]
    assert schema["properties"]["insights_status"]["enum"] == list(STATUSES)
    assert list(SNAPSHOTS.polars_schema.names()) == list(SNAPSHOTS.column_names)
    json.dumps(schema)  # serialisable as written beside the Parquet files


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, -1, 1.0, 1.5, "7", "", float("nan")]),
    st.text(max_size=3),
)
_SLOTS = st.one_of(st.fixed_dictionaries({}, optional={"value": _VALUES}), _VALUES)


@given(
    values=st.one_of(
        st.builds(lambda v: [{"value": v}], _VALUES), _VALUES, st.lists(_SLOTS, max_size=2)
    ),
    total=st.one_of(_VALUES, st.fixed_dictionaries({}, optional={"value": _VALUES})),
    keys=st.sets(st.sampled_from(["values", "total_value"])),
)
def test_a_plain_metric_reads_the_same_on_its_quick_path(
    values: object, total: object, keys: set[str]
) -> None:
    """`parse_insights` reads a plain metric's usual shape at once; whatever the item holds, the
    value is the one the full reading (`_value`) gives, the quick path taken or not."""
    item: dict[str, object] = {"name": "reach"}
    if "values" in keys:
        item["values"] = values
    if "total_value" in keys:
        item["total_value"] = total
    read = parse_insights({"data": [item]})
    assert read == {"reach": _value(item)}


def test_what_a_row_cannot_store_is_named_per_column() -> None:
    """`Table.unstorable`: every value of a stored row is checked against its column, the common
    ones (ASCII text, a count, an aware datetime) by their type at once, the rest in full: text
    with a lone surrogate, an integer past 64 bits, a bool or a float where a count goes, a naive
    datetime, a value outside a column's enum, a required column left empty."""
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    story = Story("1", now - timedelta(hours=2), "IMAGE", "STORY", caption="Café ☕ " + "x" * 40)
    row = snapshot_row(
        account="NPI",
        ig_user_id="17841400000000001",
        story=story,
        fetched_at=now,
        run_id="r1",
        api_version="v25.0",
        metrics={"views": 2**63 - 1, "reach": 0, "replies": -(2**63)},
        status="ok",
    )
    assert SNAPSHOTS.unstorable(row) == {}
    bad = {
        **row,
        "caption": "lone \ud800 surrogate",
        "views": 2**63,
        "reach": True,
        "replies": 1.0,
        "fetched_at": now.replace(tzinfo=None),
        "story_age_hours": "2",
        "insights_status": "fine",
        "capture": 3,
        "account": None,
        "permalink": b"https://example.com",
    }
    assert SNAPSHOTS.unstorable(bad) == {
        "caption": "not valid Unicode (surrogates not allowed at character 5)",
        "views": "outside the 64-bit integer range",
        "reach": "not an integer but bool",
        "replies": "not an integer but float",
        "fetched_at": "not a datetime with a time zone",
        "story_age_hours": "not a number but str",
        "insights_status": "not one of " + ", ".join(STATUSES),
        "capture": "not text but int",
        "account": "missing",
        "permalink": "not text but bytes",
    }


def test_a_table_without_rows_is_an_empty_frame_of_its_schema_each_time_anew() -> None:
    """`frame([])` (a missing file's partition, read for every account of a run) is an empty
    frame of the table's schema; each call gets its own, so a caller that changes one in place
    changes no other."""
    first = SNAPSHOTS.frame([])
    assert first.height == 0
    assert first.schema == SNAPSHOTS.polars_schema
    first.insert_column(0, pl.Series("added", [], dtype=pl.Int8))
    second = SNAPSHOTS.frame(iter([]))
    assert second is not first
    assert second.schema == SNAPSHOTS.polars_schema
    assert SNAPSHOTS.frame([]).columns == list(SNAPSHOTS.column_names)


def test_a_frame_already_in_the_schema_is_not_cast_again() -> None:
    """The schema is built once and shared; `conform` returns a frame of exactly the schema as
    it is, and still casts and orders one that is not (a fleet's run conformed 1,000 frames)."""
    assert SNAPSHOTS.polars_schema is SNAPSHOTS.polars_schema
    exact = SNAPSHOTS.frame([])
    assert SNAPSHOTS.conform(exact) is exact
    reordered = exact.select(reversed(SNAPSHOTS.column_names)).with_columns(
        pl.col("views").cast(pl.Int32)
    )
    conformed = SNAPSHOTS.conform(reordered)
    assert conformed is not reordered
    assert conformed.schema == SNAPSHOTS.polars_schema


def test_a_stored_file_in_the_schema_is_united_as_it_is_and_any_other_is_converted() -> None:
    """has_schema: the table's columns, in order, each of its exact type (a time zone, a time
    unit, an integer width all count). `unite` returns a stored frame in the schema as it is (a
    merge per append); a narrower integer, another order or an unknown column still go through
    the conversion, which keeps every value and every column."""
    exact = SNAPSHOTS.frame([{"story_id": "1", "views": 5, "run_id": "r"}])
    assert SNAPSHOTS.has_schema(exact)
    assert unite(SNAPSHOTS, exact, "here") is exact
    for changed in (
        exact.with_columns(pl.col("views").cast(pl.Int32)),
        exact.with_columns(pl.col("fetched_at").dt.cast_time_unit("ns")),
        exact.with_columns(pl.col("fetched_at").dt.replace_time_zone(None)),
        exact.select(reversed(SNAPSHOTS.column_names)),
        exact.with_columns(pl.lit("x").alias("future_column")),
        exact.drop("caption"),
    ):
        assert not SNAPSHOTS.has_schema(changed)
    narrow = exact.with_columns(pl.col("views").cast(pl.Int32)).with_columns(
        pl.lit("x").alias("future_column")
    )
    united = unite(SNAPSHOTS, narrow, "here")
    assert united.columns == [*SNAPSHOTS.column_names, "future_column"]
    assert united.get_column("views").to_list() == [5]
    assert united.get_column("views").dtype == pl.Int64


def test_timestamps_parse_to_utc() -> None:
    """Graph timestamps with a +0000 offset (or another offset) become UTC datetimes."""
    assert parse_timestamp("2026-09-20T08:15:02+0000") == datetime(
        2026, 9, 20, 8, 15, 2, tzinfo=UTC
    )
    assert parse_timestamp("2026-09-20T10:15:02+0200").hour == 8


def test_snapshot_row_age_and_expiry() -> None:
    """A row carries expires_at = posted_at + 24 h and the story's age at fetch time."""
    posted = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    row = snapshot_row(
        account="NPI",
        ig_user_id="1",
        story=Story("2", posted),
        fetched_at=posted + timedelta(hours=5, minutes=30),
        run_id="r",
        api_version="v25.0",
        metrics={"views": 3},
        status="ok",
    )
    assert row["expires_at"] == posted + timedelta(hours=24)
    assert row["story_age_hours"] == 5.5
    assert row["views"] == 3
    assert row["reach"] is None


# -- property test: generated rows survive the Parquet file unchanged --------------------------

_text = st.one_of(st.none(), st.text(max_size=40))  # includes emoji and other astral characters
_count = st.one_of(st.none(), st.integers(min_value=0, max_value=2**53))
_moment = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    posted = draw(_moment)
    fetched = posted + timedelta(seconds=draw(st.integers(0, 86_400)))
    story = Story(
        id=str(draw(st.integers(10**14, 10**17))),
        posted_at=posted,
        media_type=draw(st.sampled_from([None, "IMAGE", "VIDEO"])),
        media_product_type="STORY",
        permalink=draw(_text),
        caption=draw(st.one_of(_text, st.just("Nueva colección 🌮🔥 — 24h"))),
    )
    return snapshot_row(
        account=draw(st.sampled_from(["NPI", "LT", "MD", "RE", "SML"])),
        ig_user_id="17841400000000001",
        story=story,
        fetched_at=fetched,
        run_id=draw(st.text("abcdef0123456789", min_size=1, max_size=12)),
        api_version="v25.0",
        metrics={name: draw(_count) for name in METRIC_COLUMNS},
        status=draw(st.sampled_from(STATUSES)),  # type: ignore[arg-type]
        error=draw(_text),
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(rows(), min_size=1, max_size=8))
def test_rows_round_trip_through_parquet(tmp_path: Path, generated: list[dict[str, Any]]) -> None:
    """Rows (nulls, emoji captions, timestamps) come back from the daily file exactly as written."""
    storage = Lake(LocalBackend(tmp_path / f"lake-{abs(hash(str(generated)))}"))
    day = generated[0]["fetched_at"].date()
    storage.append(SNAPSHOTS, "NPI", day, SNAPSHOTS.frame(generated))
    back = storage.read(SNAPSHOTS, "NPI", day)
    assert back.schema == SNAPSHOTS.polars_schema
    assert back.to_dicts() == generated
