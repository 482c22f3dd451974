"""The one lenient number reader: values from JSON that may be missing, strings, or nonsense."""

from __future__ import annotations

import math

INT64_MAX = 2**63 - 1


def as_int(value: object, *, digits: bool = False) -> int | None:
    """An integer, or None when `value` is not one.

    Accepted: ints (not bools), floats that are whole, and with `digits=True` strings of ASCII digits
    (Graph error codes sometimes come as strings). Everything else, including values outside the
    signed 64-bit range a Parquet column holds, is None: never a guess, never a crash.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and math.isfinite(value) and value.is_integer()) or (
        digits and isinstance(value, str) and value.isascii() and value.isdigit()
    ):
        number = int(value)
    else:
        return None
    return number if -INT64_MAX - 1 <= number <= INT64_MAX else None


def as_float(value: object) -> float | None:
    """A finite float from a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None
