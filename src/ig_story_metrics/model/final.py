"""The final-values table: one row per expired story, from its snapshots and the webhook's word.

Stored as hive partitions, `tables/story_final/account={ACCOUNT}/posted_date={date}/
story_final.parquet`, each replaced whole: `account` and `posted_date` come from the folder names
(BigQuery refuses a partition key that is also a column of the file), so they are not columns here.

`final_rows()` is pure: snapshot rows and combined webhook deliveries in, rows out, the same rows
for the same input (sorted by posted_at, story_id), so a rebuild gives the same data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ig_story_metrics.model.metrics import METRIC_COLUMNS
from ig_story_metrics.model.snapshot import STATUSES
from ig_story_metrics.model.table import Column, Table
from ig_story_metrics.model.webhook import WEBHOOK_METRICS, FinalWebhook

if TYPE_CHECKING:
    import polars as pl
else:
    from ig_story_metrics.model.lazy import pl  # imported when first used (model/lazy.py)

COMPLETE_WITHIN = timedelta(minutes=10)
# A webhook-only story is placed by when Meta sent it: about 1 h after its expiry, 25 h after posting.
WEBHOOK_AFTER_POSTING = timedelta(hours=25)
SOURCES: tuple[str, ...] = ("poll", "webhook", "poll+webhook", "none")
LISTING = ("media_type", "media_product_type", "permalink", "caption", "posted_at", "expires_at")


def _ts(name: str, text: str) -> Column:
    return Column(name, "datetime", True, text)


COLUMNS: tuple[Column, ...] = (
    Column("ig_user_id", "str", False, "Instagram professional account id"),
    Column("story_id", "str", False, "IG media id of the story"),
    Column("media_type", "str", True, "IMAGE or VIDEO (from the last snapshot)"),
    Column("media_product_type", "str", True, "STORY"),
    Column("permalink", "str", True, "link to the story"),
    Column("caption", "str", True, "the story's caption, if any"),
    _ts("posted_at", "when the story was posted (UTC); null for a story only the webhook knows"),
    _ts("expires_at", "posted_at + 24 h (UTC); null when posted_at is"),
    _ts("first_snapshot_at", "the first snapshot of the story (UTC); null: no snapshot"),
    _ts("last_snapshot_at", "the last snapshot of the story (UTC); null: no snapshot"),
    Column("last_snapshot_age_hours", "float", True, "the story's age at its last snapshot"),
    Column("snapshots", "int", False, "how many snapshots the story has"),
    Column("sweep_snapshots", "int", False, "how many of them the sweep took"),
    *(
        Column(m, "int", True, f"final `{m}`: its last non-null snapshot value; null: never read")
        for m in METRIC_COLUMNS
    ),
    Column(
        "final_status", "str", True, "insights_status of the last snapshot; null: none", STATUSES
    ),
    *(
        Column(
            f"webhook_{m}",
            "int",
            True,
            f"`{m}` of the story_insights webhook; null: not sent "
            "or fewer than 5 (webhook_note says which)",
        )
        for m in WEBHOOK_METRICS
    ),
    Column("webhook_other", "str", True, "other keys of the webhook's value, as JSON (kept)"),
    Column("webhook_note", "str", True, "e.g. `reach: fewer than 5 (Meta sends -1)`"),
    _ts("webhook_received_at", "when Meta sent the latest delivery about the story (entry.time)"),
    Column("webhook_deliveries", "int", False, "distinct deliveries about the story"),
    Column("final_source", "str", False, "where the final values come from", SOURCES),
    Column(
        "complete",
        "bool",
        False,
        "the last snapshot is within 10 minutes of expiry, or the webhook delivered",
    ),
)

STORY_FINAL = Table(
    name="story_final",
    title="instagram_story_final",
    description="One row per expired Instagram story: its final values (hive partitions "
    "account=, posted_date=).",
    columns=COLUMNS,
    partition_by=("account", "posted_date"),
    disposition="replace_partition",
)

Partition = tuple[str, date]  # (account, posted_date)


def final_rows(
    snapshots: pl.DataFrame,
    webhooks: Mapping[tuple[str, str], FinalWebhook],
    accounts: Mapping[str, str],
    now: datetime,
) -> dict[Partition, list[dict[str, Any]]]:
    """The rows of every story of `accounts` (name -> ig_user_id) expired by `now`, by partition."""
    rows: dict[Partition, list[dict[str, Any]]] = {}
    users = {user: name for name, user in accounts.items()}
    seen: set[tuple[str, str]] = set()
    ordered = _expired(snapshots.filter(pl.col("account").is_in(list(accounts))), now)
    for (name, story), group in ordered.group_by(["account", "story_id"], maintain_order=True):
        snaps = group.to_dicts()
        posted = _last(snaps, "posted_at")  # set, and the story expired: `_expired` chose it
        user = accounts[str(name)]
        seen.add((user, str(story)))
        row = _from_snapshots(user, str(story), snaps)
        _add_webhook(row, webhooks.get((user, str(story))))
        rows.setdefault((str(name), posted.date()), []).append(row)
    for (user, media), hook in webhooks.items():
        if (user, media) in seen or user not in users or hook.received_at is None:
            continue
        row = _from_snapshots(user, media, [])
        _add_webhook(row, hook)
        day = (hook.received_at - WEBHOOK_AFTER_POSTING).date()
        rows.setdefault((users[user], day), []).append(row)
    return {key: sorted(found, key=_order) for key, found in rows.items()}


def _expired(snapshots: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """The snapshots of the stories expired by `now` (their last known `expires_at` and
    `posted_at` set, the expiry past), in time order: chosen by one Polars query, so that the
    stories still live (most of them, at every hourly run) cost no Python work."""
    ordered = snapshots.sort("fetched_at", maintain_order=True)
    key = ["account", "story_id"]
    expired = (
        ordered.group_by(key)
        .agg(
            pl.col("expires_at").drop_nulls().last().alias("expires"),
            pl.col("posted_at").drop_nulls().last().alias("posted"),
        )
        .filter(pl.col("posted").is_not_null() & (pl.col("expires") <= now))
        .select(key)
    )
    return ordered.join(expired, on=key, how="semi", maintain_order="left")


def _order(row: Mapping[str, Any]) -> tuple[str, str]:
    posted = row["posted_at"]
    return (posted.isoformat() if posted is not None else "", row["story_id"])


def _last(snaps: list[dict[str, Any]], column: str) -> Any:
    """The last non-null value of `column` (snapshots in time order)."""
    return next((s[column] for s in reversed(snaps) if s.get(column) is not None), None)


def _from_snapshots(user: str, story: str, snaps: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {"ig_user_id": user, "story_id": story}
    row.update({c: _last(snaps, c) for c in LISTING})
    first, last = (snaps[0], snaps[-1]) if snaps else ({}, {})
    row.update(
        first_snapshot_at=first.get("fetched_at"),
        last_snapshot_at=last.get("fetched_at"),
        last_snapshot_age_hours=last.get("story_age_hours"),
        snapshots=len(snaps),
        sweep_snapshots=sum(s.get("capture") == "sweep" for s in snaps),
    )
    row.update({m: _last(snaps, m) for m in METRIC_COLUMNS})
    row["final_status"] = last.get("insights_status")
    expires, at = row["expires_at"], row["last_snapshot_at"]
    row["complete"] = bool(expires and at and at >= expires - COMPLETE_WITHIN)
    polled = any(row[m] is not None for m in METRIC_COLUMNS)
    row["final_source"] = "poll" if polled else "none"
    return row


def _add_webhook(row: dict[str, Any], hook: FinalWebhook | None) -> None:
    row.update({f"webhook_{m}": None for m in WEBHOOK_METRICS})
    row.update(webhook_other=None, webhook_note=None, webhook_received_at=None)
    row["webhook_deliveries"] = 0
    if hook is None:
        return
    row.update({f"webhook_{m}": hook.values.get(m) for m in WEBHOOK_METRICS})
    other = {k: v for k, v in hook.values.items() if k not in WEBHOOK_METRICS} | hook.other
    row["webhook_other"] = json.dumps(other, sort_keys=True, default=str) if other else None
    row["webhook_note"] = "; ".join(hook.notes) or None
    row["webhook_received_at"] = hook.received_at
    row["webhook_deliveries"] = hook.deliveries
    row["complete"] = True
    row["final_source"] = "webhook" if row["final_source"] == "none" else "poll+webhook"


def partitions_of(rows: Iterable[Partition]) -> list[Partition]:
    return sorted(set(rows))
