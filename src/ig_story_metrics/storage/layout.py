"""Where a declared table's partition lives in the lake (the keys of DESIGN.md's layout)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ig_story_metrics.model.table import Table

QUARANTINE_MARK = ".corrupt-"


def snapshot_key(account: str, day: date) -> str:
    """The daily Parquet file of an account's snapshots (the original system's path)."""
    d = day.isoformat()
    return f"Instagram/{account}/insights/stories/{d}/instagram_story_metrics_{d}.parquet"


def snapshot_schema_key(account: str, day: date) -> str:
    """The JSON schema beside a daily snapshot file."""
    d = day.isoformat()
    return f"Instagram/{account}/schemas/stories/{d}/instagram_story_metrics_{d}_schema.json"


def table_key(table: Table, account: str, day: date) -> str:
    """The object holding one partition (account, day) of `table`."""
    if table.name == "snapshots":
        return snapshot_key(account, day)
    return (
        f"tables/{table.name}/account={account}/{table.partition_by[-1]}={day.isoformat()}/"
        f"{table.name}.parquet"
    )


def table_prefix(table: Table, account: str) -> str:
    """The folder holding every partition of `table` for `account`."""
    if table.name == "snapshots":
        return f"Instagram/{account}/insights/stories"
    return f"tables/{table.name}/account={account}"


def quarantine_key(key: str, at: datetime) -> str:
    """Where an unreadable object is moved aside: beside it, named after it and the UTC moment."""
    return f"{key}{QUARANTINE_MARK}{at.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def schema_key(table: Table, account: str, day: date) -> str:
    """The JSON schema object of one partition of `table` (or of the table, for hive tables)."""
    if table.name == "snapshots":
        return snapshot_schema_key(account, day)
    return f"tables/{table.name}/_schema.json"


# The original names, kept for callers of the first version.
parquet_key = snapshot_key
