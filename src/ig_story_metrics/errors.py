"""The root of every error the package raises on purpose, sorted by whose fault it is.

    IgStoryMetricsError
    ├── ConfigError          the run cannot start (exit code 2)
    │   ├── CallerError      the request is wrong: an unknown or malformed account name (HTTP 400)
    │   └── SetupError       the deployment is wrong: settings, accounts file, tokens (HTTP 500)
    ├── Refused              a Cloud Function answers this HTTP status and message, nothing more
    └── StorageError         the lake could not be read or written (storage/)

Graph API errors have their own tree in `graph/errors.py`, rooted here too. Entry points map errors
by class: `CallerError` -> 400, any other `ConfigError` -> 500 (CLI: exit 2).
"""

from __future__ import annotations


class IgStoryMetricsError(Exception):
    """Anything this package raises on purpose."""


class ConfigError(IgStoryMetricsError):
    """A usage or configuration problem: the run cannot start (exit code 2)."""

    http_status = 500


class CallerError(ConfigError):
    """The caller asked for something that cannot be: an unknown or malformed account name."""

    http_status = 400


class SetupError(ConfigError):
    """The deployment is misconfigured: settings, accounts file, tokens."""

    http_status = 500


class Refused(IgStoryMetricsError):
    """A Cloud Function stops here and answers `status` with `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StorageError(IgStoryMetricsError):
    """The lake could not be read or written; the message names the file or object."""
