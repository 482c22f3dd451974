"""The one secret-masking module: every text that leaves the process passes through `scrub()`.

- `SECRET_PARAMS` is the one set of sensitive parameter names (tokens, app secret proofs).
- `redact(text)` masks `name=value` pairs of those parameters and bearer credentials in any text.
- `register_secrets(values)` adds exact values (the run's tokens, the app secret) masked wherever
  they appear, even without a parameter name around them (Meta may echo a token in a message).
- `scrub(text)` = both; `scrub_value(obj)` applies it through nested containers.
- `Masker` holds a set of secrets (the module keeps one for the process); tests make their own.
- `strip_secrets(url)` drops the secret parameters from a URL (Meta repeats the token in
  `paging.next`).

Masking never breaks JSON: the mask has no quote or backslash, a parameter's value ends before any
quote or backslash, and a registered secret's mask is widened to whole escape sequences, so
`scrub()` over a JSON document keeps it valid (tests/test_redact.py checks it on generated text).
"""

from __future__ import annotations

import json
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

# A name starts a word, or follows a JSON escape such as `\n`. The separator may carry a quote,
# JSON-escaped or not (`"access_token\": \"...`), but a backslash only as part of `\"`: a lone one
# starts an escape sequence (`\n`) that masking must not cut. The value stops before anything that
# ends a JSON string or follows one.
_START = r"(?:\b|(?<=\\[bfnrt]))"
_PARAM = re.compile(
    rf"(?i){_START}(" + "|".join(sorted(SECRET_PARAMS)) + r")((?:\\?[\"'])?\s*[=:]\s*(?:\\?[\"'])?)"
    r"([^&\s\"'\\,:\]}]*)"
)
_BEARER = re.compile(rf"(?i){_START}((?:bearer|oauth)\s+)[A-Za-z0-9._|\-]+")
_HEX = frozenset("0123456789abcdefABCDEF")


def redact(text: str) -> str:
    """Mask secret query parameters and bearer credentials in any text.

    Each pattern runs only on a text that holds one of its words in some case: the patterns try
    every position of a long text (a fleet's JSON report is most of a megabyte: 0.12 s), a search
    for a few words does not (2 ms). The text is case-folded as the patterns compare (`_folded`),
    so no text they would match is passed over."""
    folded = _folded(text)
    if any(name in folded for name in SECRET_PARAMS):
        text = _PARAM.sub(_param_mask, text)
    if "bearer" in folded or "oauth" in folded:
        text = _BEARER.sub(r"\1" + MASK, text)
    return text


def _folded(text: str) -> str:
    """`text` case-folded, with the two letters that case-insensitive patterns take for "i"
    but `casefold` does not (U+0131 dotless i, U+0130 dotted capital I) folded to "i" as well."""
    return text.casefold().replace("\u0131", "i").replace("i\u0307", "i")


def _param_mask(match: re.Match[str]) -> str:
    name, separator, value = match.groups()
    if not value or (separator.startswith('"') and not separator.endswith('"')):
        # nothing to hide, or a JSON key whose value is not a string (a number, null, an object);
        # `"access_token="` at the end of a JSON string is followed by `,` `}` `]` `:`: no value
        return match.group(0)
    return name + separator + MASK


class Masker:
    """A set of exact secret values, masked wherever they appear in a text, JSON text included."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, values: Iterable[str]) -> None:
        """Mask these values from now on (and their JSON-escaped forms)."""
        forms = {
            form
            for value in values
            if len(value) >= MIN_SECRET_LENGTH
            for form in (value, *(json.dumps(value, ensure_ascii=a)[1:-1] for a in (True, False)))
        }
        with self._lock:
            if not forms <= self._secrets:
                self._secrets |= forms
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def scrub(self, text: str) -> str:
        """`text` with registered secrets, secret parameters and bearer values masked."""
        pattern = self._pattern
        if pattern is not None:
            text = _mask(pattern, text)
        return redact(text)


def _mask(pattern: re.Pattern[str], text: str) -> str:
    """Replace every match, widened so that no escape sequence (`\n`, `\"`, `\u00e9`) is cut."""
    out: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        if match.end() <= done:  # inside the previous mask, widened
            continue
        start = max(_escape_start(text, match.start()), done)
        out += [text[done:start], MASK]
        done = _escape_end(text, match.end())
    return "".join(out) + text[done:] if out else text


def _escaping(text: str, at: int) -> bool:
    """Whether the backslash at `at` starts an escape (an even run of backslashes precedes it)."""
    run = 0
    while at - run - 1 >= 0 and text[at - run - 1] == "\\":
        run += 1
    return run % 2 == 0


def _escape_start(text: str, start: int) -> int:
    """`start`, or the start of the escape sequence that `start` is inside of."""
    for digits in range(4):  # inside `\uXXXX`, after 0 to 3 of its hex digits
        at = start - digits - 2
        if (
            at >= 0
            and text[at : at + 2] == "\\u"
            and all(c in _HEX for c in text[at + 2 : start])
            and _escaping(text, at)
        ):
            return at
    if start > 0 and text[start - 1] == "\\" and _escaping(text, start - 1):
        return start - 1
    return start


def _escape_end(text: str, end: int) -> int:
    """`end`, or the end of the escape sequence that a match ending in a backslash started."""
    if end == 0 or text[end - 1] != "\\" or not _escaping(text, end - 1):
        return end
    return min(len(text), end + (5 if text[end : end + 1] == "u" else 1))


_masker = Masker()


def register_secrets(values: Iterable[str]) -> None:
    """Mask these exact values wherever they appear in `scrub()`ed text (logs, answers, rows)."""
    _masker.register(values)


def scrub(text: str) -> str:
    """`text` with registered secrets, secret parameters and bearer values masked.

    JSON text stays valid JSON: no mask cuts an escape sequence in two.
    """
    return _masker.scrub(text)


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
