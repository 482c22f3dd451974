"""Where the lake lives: `STORAGE_URL` parsed strictly into a local folder or a GCS bucket + prefix.

Accepted (docs/storage.md):

    unset or empty           ./data
    data, ./data, /srv/lake, ~/lake     a local folder, relative or absolute
    file:///srv/lake         an absolute local folder, as a URL (percent-escapes decoded)
    gs://BUCKET              the root of a bucket with a valid GCS bucket name
    gs://BUCKET/PREFIX       under a prefix in that bucket

Anything else is refused with a one-line `ValueError` naming the value: another scheme, one slash
too few (`gs:/bucket/p`, `gs:bucket`, `file:/x`), a host in a file URL (`file://localhost/x`),
blanks around the value or only blanks, control characters, empty or `.`/`..` prefix segments.
A local path that starts like a scheme (`name:`) must be written `./name:...`. Pure: no I/O here
(settings.py checks the local folder itself).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

DEFAULT_STORAGE_URL = "./data"
FORMS = "a folder path, file:///ABSOLUTE/PATH or gs://BUCKET[/PREFIX]"

# GCS bucket names: 3-63 characters of a-z 0-9 - _ (dotted names up to 222, each part <= 63),
# starting and ending with a letter or digit; not an IP address; no "goog" prefix or "google".
_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class StorageLocation:
    """A parsed `STORAGE_URL`: a local folder (`path`) or a bucket and prefix."""

    kind: Literal["local", "gcs"]
    url: str
    path: str = ""
    bucket: str = ""
    prefix: str = ""

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


def parse_storage_url(value: str | None) -> StorageLocation:
    """`value` as a `StorageLocation`, or a `ValueError` with one line saying what is wrong."""
    if value is None or value == "":
        return StorageLocation("local", DEFAULT_STORAGE_URL, path=DEFAULT_STORAGE_URL)
    if value != value.strip():
        raise ValueError(
            f"STORAGE_URL {value!r} has blanks around it (unset it for the default ./data)"
        )
    if _CONTROL.search(value):
        raise ValueError(f"STORAGE_URL {value!r} contains a control character")
    if value.startswith("gs://"):
        return _gcs(value)
    if value.startswith("file://"):
        return _file(value)
    if _SCHEME.match(value):
        raise ValueError(f"unsupported STORAGE_URL {value!r}: use {FORMS}")
    return StorageLocation("local", value, path=value)


def bucket_problem(name: str) -> str | None:
    """Why `name` is not a valid GCS bucket name, or None."""
    parts = name.split(".")
    if not _BUCKET_CHARS.fullmatch(name) or any(not p for p in parts):
        return "use lowercase letters, digits, '-', '_' and '.', starting and ending alphanumeric"
    if len(name) < 3 or len(name) > (222 if len(parts) > 1 else 63):
        return "a bucket name has 3 to 63 characters (222 with dots)"
    if any(len(p) > 63 for p in parts):
        return "each dot-separated part of a bucket name has at most 63 characters"
    if _IPV4.fullmatch(name):
        return "a bucket name cannot be an IP address"
    if name.startswith("goog") or "google" in name:
        return "a bucket name cannot start with 'goog' or contain 'google'"
    return None


def _gcs(value: str) -> StorageLocation:
    bucket, _, prefix = value.removeprefix("gs://").partition("/")
    problem = bucket_problem(bucket) if bucket else "no bucket name"
    if problem:
        raise ValueError(
            f"STORAGE_URL {value!r} does not name a valid bucket ({problem}): "
            "use gs://BUCKET or gs://BUCKET/PREFIX"
        )
    prefix = prefix.removesuffix("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise ValueError(
            f"STORAGE_URL {value!r} has an empty, '.' or '..' part in its prefix: "
            "use gs://BUCKET/PREFIX/PARTS"
        )
    return StorageLocation("gcs", value, bucket=bucket, prefix=prefix)


def _file(value: str) -> StorageLocation:
    rest = value.removeprefix("file://")
    if not rest.startswith("/"):
        raise ValueError(
            f"STORAGE_URL {value!r} names a host or a relative path: a file URL is "
            "file:///ABSOLUTE/PATH (three slashes), or give the folder path itself"
        )
    path = unquote(rest)
    if _CONTROL.search(path):
        raise ValueError(f"STORAGE_URL {value!r} contains a control character")
    return StorageLocation("local", value, path=path)
