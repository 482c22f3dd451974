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


def as_count(value: object) -> int | None:
    """A count Meta reports (a metric value): a non-negative `as_int`, else None.

    A string ("123"), a fraction (1.5), a negative number or one beyond 64 bits (2**70) is not a
    count we can store truthfully: None, and the caller says the metric was not read.
    """
    if type(value) is int:  # the common case, read at once (a bool's type is bool, not int)
        return value if 0 <= value <= INT64_MAX else None
    number = as_int(value)
    return number if number is not None and number >= 0 else None
