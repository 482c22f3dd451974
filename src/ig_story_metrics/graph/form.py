"""A form body (`application/x-www-form-urlencoded`) encoded by `str.translate`, in C.

`urllib.parse.urlencode`, which httpx uses for `data=`, quotes a value with one Python call per
byte that needs quoting; a batch of 50 operations is a few kilobytes of JSON, nearly every other
byte a quote, brace, colon or slash, and a fleet sends thousands of batches. The bytes are the
same as `urlencode`'s (quote_plus, nothing safe but letters, digits and `_.-~`; a space is `+`).
"""

from __future__ import annotations

from collections.abc import Mapping

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
# byte value (as the latin-1 character) -> what it becomes in a form value
_QUOTE = {
    byte: chr(byte) if byte in _UNRESERVED else "+" if byte == 0x20 else f"%{byte:02X}"
    for byte in range(256)
}


def quote(text: str) -> str:
    """`urllib.parse.quote_plus(text, safe="")`: UTF-8 bytes, percent-encoded."""
    return text.encode("utf-8").decode("latin-1").translate(_QUOTE)


def encode(form: Mapping[str, str]) -> bytes:
    """The body `urlencode(form)` gives, as bytes."""
    return "&".join(f"{quote(name)}={quote(value)}" for name, value in form.items()).encode("ascii")
