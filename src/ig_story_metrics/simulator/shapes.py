"""How an insights answer is shaped: every shape a client must read, from Meta's docs and the wild.

The values are always the world's true values; only their shape changes, as `Faults` asks:

- plain metrics as `values[0].value`, or as `total_value.value` only (`shape` "total_value"/"mixed");
- breakdown metrics with `values[0].value` and `total_value.breakdowns[].results[]` (parts Meta has
  no count for are left out); or without their total (no `value`, no `values`); without
  `dimension_keys`; with no `breakdowns` at all; with dimension values in UPPER or Mixed case;
- a metric left out of `data`, answered with `"values": []`, as a string, or as 2**70.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ig_story_metrics.simulator.faults import Dice, Faults

BREAKDOWN_OF = {"navigation": "story_navigation_action_type", "profile_activity": "action_type"}
BREAKDOWN_PARTS = {
    "navigation": ("tap_forward", "tap_back", "tap_exit", "swipe_forward"),
    "profile_activity": ("bio_link_clicked", "call", "direction", "email", "other", "text"),
}
PART_COLUMN = {
    "tap_forward": "taps_forward",
    "tap_back": "taps_back",
    "tap_exit": "taps_exit",
    "swipe_forward": "swipe_forward",
    **{p: f"profile_activity_{p}" for p in BREAKDOWN_PARTS["profile_activity"]},
}


class Shaper:
    """Builds the `data` of one insights answer under the configured shape faults."""

    def __init__(self, faults: Faults, dice: Dice, shape: str = "values") -> None:
        self.faults = faults
        self.dice = dice
        self.shape = shape

    def total_value_shaped(self, story_id: str) -> bool:
        """Whether plain metrics of this story come as `total_value` only (shape "mixed": by hour)."""
        return self.shape == "total_value" or (
            self.shape == "mixed" and int(story_id) // 100 % 2 == 1
        )

    def data(
        self, story_id: str, metrics: list[str], values: Mapping[str, int], breakdown: str | None
    ) -> list[dict[str, Any]]:
        """The `data` list for `metrics` of one story (a metric may be left out)."""
        out = []
        for name in metrics:
            key = f"{story_id}:{name}"
            if self.dice.roll("missing", key, self.faults.missing_metric_rate):
                continue
            item = self._metric(story_id, name, values, breakdown)
            self._spoil(item, key)
            out.append(item)
        return out

    def _metric(
        self, story_id: str, name: str, values: Mapping[str, int], breakdown: str | None
    ) -> dict[str, Any]:
        total = values[name]
        item: dict[str, Any] = {
            "name": name,
            "period": "lifetime",
            "values": [{"value": total}],
            "title": name.replace("_", " ").capitalize(),
            "description": f"Simulated {name}.",
            "id": f"{story_id}/insights/{name}/lifetime",
        }
        if breakdown is not None:
            item["total_value"] = self._breakdown(f"{story_id}:{name}", name, total, values)
            if "value" not in item["total_value"]:
                del item["values"]
        elif self.total_value_shaped(story_id):
            del item["values"]
            item["total_value"] = {"value": total}
        return item

    def _breakdown(
        self, key: str, name: str, total: int, values: Mapping[str, int]
    ) -> dict[str, Any]:
        roll, faults = self.dice.roll, self.faults
        if roll("no-breakdown", key, faults.no_breakdown_rate):
            return {"value": total}
        odd_case = roll("odd-case", key, faults.odd_case_rate)
        results = [
            {"dimension_values": [_case(part, odd_case, key)], "value": values[PART_COLUMN[part]]}
            for part in BREAKDOWN_PARTS[name]
            if values[PART_COLUMN[part]] > 0  # Meta leaves zero parts out
        ]
        breakdown: dict[str, Any] = {"dimension_keys": [BREAKDOWN_OF[name]], "results": results}
        if roll("no-dimension-keys", key, faults.no_dimension_keys_rate):
            del breakdown["dimension_keys"]
        shaped: dict[str, Any] = {"value": total, "breakdowns": [breakdown] if results else []}
        if results and roll("no-total", key, faults.no_total_rate):
            del shaped["value"]
        return shaped

    def _spoil(self, item: dict[str, Any], key: str) -> None:
        """Replace the metric's value with `[]`, a string or 2**70, when the dice say so."""
        roll, faults = self.dice.roll, self.faults
        if "values" in item and roll("empty-values", key, faults.empty_values_rate):
            item["values"] = []
            item.pop("total_value", None)
            return
        for kind, spoiled in (("string-value", str), ("huge-value", lambda _: 2**70)):
            rate = faults.string_value_rate if kind == "string-value" else faults.huge_value_rate
            if roll(kind, key, rate):
                for holder in (*item.get("values", ()), item.get("total_value", {})):
                    if "value" in holder:
                        holder["value"] = spoiled(holder["value"])
                return


def _case(part: str, odd: bool, key: str) -> str:
    if not odd:
        return part
    return part.upper() if len(key) % 2 else part.title()
