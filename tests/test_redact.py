"""The one masking module over JSON text: what it masks, and that a JSON document stays JSON."""

from __future__ import annotations

import json
import re
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ig_story_metrics.redact import MASK, SECRET_PARAMS, Masker, _folded, redact

SECRET = "EAAJsonSecret0123456789abcdef"

# Characters that matter to JSON escaping and to the masking patterns, and whole fragments.
PIECES = st.sampled_from(
    [
        "\\", '"', "'", "=", ":", " ", "&", ",", "}", "\n", "\t", "\x00", "é", "\u2028", "u",
        "00e9", "n", "b", "access_token", "access_token=", 'access_token": "', "Bearer ",
        "oauth ", "input_token:", SECRET, "abc", "x",
    ]
)  # fmt: skip
TEXTS = st.lists(PIECES, max_size=12).map("".join)
# Secrets that are not part of the mask itself (a secret "redacted" would be in every mask).
SECRETS = st.text(alphabet='ab\\"\nué0', min_size=8, max_size=10).filter(lambda s: s not in MASK)


def strings(value: object) -> list[str]:
    """Every string of a decoded JSON document, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=4), secret=SECRETS, ascii_only=st.booleans())
@example(texts=["access_token=\nfoo"], secret=SECRET, ascii_only=True)
@example(texts=["a\n" + SECRET[1:], "x"], secret="n" + SECRET[1:], ascii_only=True)
@example(texts=['abcdefgh"'], secret="abcdefgh\\", ascii_only=True)
@example(texts=["é" + "12345678"], secret="e912345678", ascii_only=True)
def test_scrubbed_json_stays_json_and_holds_no_secret(
    texts: list[str], secret: str, ascii_only: bool
) -> None:
    """Any JSON document, scrubbed as text, is still JSON, and none of its strings holds a secret."""
    masker = Masker()
    masker.register([SECRET, secret])
    document = {"error": texts[0], "items": texts[1:], texts[-1]: {"nested": texts}}
    text = json.dumps(document, ensure_ascii=ascii_only)
    scrubbed = json.loads(masker.scrub(text))  # raises when the scrubber broke the JSON
    for value in strings(scrubbed):
        assert SECRET not in value
        assert secret not in value


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        ('token "quoted" and access_token=EAAxyz123&x=1', "&x=1"),
        ("access_token=\nnext line", "next line"),
        ('{"access_token": "EAAxyz123"}', "{"),
        ("Authorization: Bearer EAAxyz123", "Authorization"),
        ("line\nBearer EAAxyz123", "line"),
    ],
)
def test_parameters_and_bearer_values_are_masked_inside_json(message: str, kept: str) -> None:
    """A message holding `access_token=` or a bearer value, in a JSON answer: masked, still JSON."""
    scrubbed = json.loads(Masker().scrub(json.dumps({"error": message})))["error"]
    assert "EAAxyz123" not in scrubbed
    assert kept in scrubbed
    assert MASK in scrubbed or "EAAxyz123" not in message


def test_a_registered_token_is_masked_in_its_json_escaped_form() -> None:
    """A secret with a quote or backslash is masked in JSON text too, where it appears escaped."""
    masker = Masker()
    masker.register(['tok"en\\value1'])
    text = json.dumps({"error": 'Meta said: tok"en\\value1 is invalid'})
    assert json.loads(masker.scrub(text)) == {"error": f"Meta said: {MASK} is invalid"}


def test_short_values_are_not_secrets() -> None:
    """Values under 8 characters are not registered: masking them would garble ordinary text."""
    masker = Masker()
    masker.register(["abc"])
    assert masker.scrub("abc abc") == "abc abc"


def test_a_letter_the_patterns_take_in_any_case_is_never_passed_over() -> None:
    """redact() runs its patterns only on a text holding one of their words, case-folded: every
    character that the case-insensitive patterns take for a letter of those words folds to that
    letter (the whole of Unicode, the dotless and dotted i included), so no match is skipped."""
    words = "".join(SECRET_PARAMS) + "bearer" + "oauth"
    letters = sorted(set(words))
    any_letter = re.compile("(?i)[" + re.escape("".join(letters)) + "]")
    taken = [c for c in map(chr, range(sys.maxunicode + 1)) if any_letter.fullmatch(c)]
    assert len(taken) > len(letters)  # other cases, Kelvin sign, long s, dotless i...
    for c in taken:
        for letter in letters:
            if re.fullmatch("(?i)" + re.escape(letter), c):
                assert _folded(c) == letter, (hex(ord(c)), letter)


@pytest.mark.parametrize(
    "text",
    [
        "?\u0131nput_token=SECRETVALUE1",
        "\u0130NPUT_TOKEN=SECRETVALUE1",
        "acce\u017fs_token=SECRETVALUE1",
        "Authorization: BEARER SECRETVALUE1",
        "header OAuth SECRETVALUE1",
    ],
)
def test_parameters_in_odd_cases_are_masked(text: str) -> None:
    assert "SECRETVALUE1" not in redact(text)
    assert MASK in redact(text)
