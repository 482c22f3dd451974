"""The one secret-masking module: every text that leaves the process passes through `scrub()`.

- `SECRET_PARAMS` is the one set of sensitive parameter names (tokens, app secret proofs).
- `redact(text)` masks `name=value` pairs of those parameters and bearer credentials in any text.
- `register_secrets(values)` adds exact values (the run's tokens, the app secret) masked wherever
  they appear, even without a parameter name around them (Meta may echo a token in a message).
- `scrub(text)` = both; `scrub_value(obj)` applies it through nested containers.
- `strip_secrets(url)` drops the secret parameters from a URL (Meta repeats the token in
  `paging.next`).

Masking never breaks JSON: the mask has no quote or backslash, and a value's end is found before
any quote, so `scrub()` over a JSON document keeps it valid.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK: Final = "[redacted]"
SECRET_PARAMS: Final = frozenset(
    {"access_token", "appsecret_proof", "input_token", "client_secret", "fb_exchange_token"}
)
# Shorter values are not treated as secrets: masking them would garble ordinary text.
MIN_SECRET_LENGTH: Final = 8

_PARAM = re.compile(
    r"(?i)\b(" + "|".join(sorted(SECRET_PARAMS)) + r")(\\?[\"']?\s*[=:]\s*\\?[\"']?)"
    r"[^&\s\"'\\,}]*"
)
_BEARER = re.compile(r"(?i)\b((?:bearer|oauth)\s+)[A-Za-z0-9._|\-]+")

_secrets: set[str] = set()
_lock = threading.Lock()


def redact(text: str) -> str:
    """Mask secret query parameters and bearer credentials in any text."""
    return _BEARER.sub(r"\1" + MASK, _PARAM.sub(r"\1\2" + MASK, text))


def register_secrets(values: Iterable[str]) -> None:
    """Mask these exact values wherever they appear in `scrub()`ed text (logs, answers, rows)."""
    with _lock:
        _secrets.update(v for v in values if len(v) >= MIN_SECRET_LENGTH)


def scrub(text: str) -> str:
    """`text` with registered secrets, secret parameters and bearer values masked."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return redact(text)


def scrub_value(value: object) -> object:
    """`scrub()` through strings, mappings and sequences; numbers, bools and None unchanged."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub(str(k)): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


def strip_secrets(url: str) -> str:
    """`path?query` of a URL with secret parameters removed."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = urlencode([(k, v) for k, v in query if k.lower() not in SECRET_PARAMS])
    return parts.path + (f"?{kept}" if kept else "")
