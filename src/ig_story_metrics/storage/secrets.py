"""Secret Manager: where renewed tokens are written, as new versions of an account's token secret.

Through google-cloud-secret-manager over REST (`transport="rest"`), in production and in tests
alike. Google ships no Secret Manager emulator: with `SECRET_MANAGER_EMULATOR_HOST` set, the client
talks to that address (a local fake of the REST API in the tests) with anonymous credentials.

A secret is named by its id (in GOOGLE_CLOUD_PROJECT) or by `projects/P/secrets/S`. No error
message carries a secret's value.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from ig_story_metrics.errors import IgStoryMetricsError
from ig_story_metrics.redact import scrub


class SecretStoreError(IgStoryMetricsError):
    """Secret Manager could not be read or written; the message names the secret."""


def secret_path(name: str, project: str | None) -> str:
    """The full resource name of a secret given as an id or as `projects/P/secrets/S`."""
    if name.startswith("projects/"):
        return name
    if not project:
        raise SecretStoreError(
            f"secret {name}: set GOOGLE_CLOUD_PROJECT, or write token_secret as "
            f"projects/PROJECT/secrets/{name}"
        )
    return f"projects/{project}/secrets/{name}"


class SecretStore:
    """Versions of secrets in one project; the client is made on first use."""

    def __init__(self, project: str | None, *, emulator_host: str | None = None) -> None:
        self.project = project
        self.emulator_host = emulator_host
        self._client: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _make_client(self.emulator_host)
            return self._client

    def add_version(self, secret: str, value: SecretStr) -> str:
        """Store `value` as the secret's newest version; its resource name (…/versions/N)."""
        parent = secret_path(secret, self.project)
        data = value.get_secret_value().encode()
        try:
            version = self._get().add_secret_version(
                request={"parent": parent, "payload": {"data": data, "data_crc32c": _crc(data)}}
            )
        except _failures() as exc:
            raise SecretStoreError(f"cannot add a version to {parent}: {_why(exc)}") from None
        return str(version.name)

    def latest_created(self, secret: str) -> datetime | None:
        """When the secret's latest version was stored (None when it has no version)."""
        from google.api_core import exceptions  # noqa: PLC0415

        name = secret_path(secret, self.project) + "/versions/latest"
        try:
            version = self._get().get_secret_version(request={"name": name})
        except exceptions.NotFound:
            return None
        except _failures() as exc:
            raise SecretStoreError(f"cannot read {name}: {_why(exc)}") from None
        created: datetime | None = version.create_time
        return created

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.transport.close()
                self._client = None


def _make_client(emulator_host: str | None) -> Any:
    from google.cloud import secretmanager  # noqa: PLC0415 - keeps runs without secrets light

    if not emulator_host:
        return secretmanager.SecretManagerServiceClient(transport="rest")
    from google.api_core.client_options import ClientOptions  # noqa: PLC0415
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415

    endpoint = emulator_host if "://" in emulator_host else f"http://{emulator_host}"
    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def _failures() -> tuple[type[BaseException], ...]:
    """What a Secret Manager call may raise: API errors, missing credentials, network errors."""
    from google.api_core.exceptions import GoogleAPIError  # noqa: PLC0415
    from google.auth.exceptions import GoogleAuthError  # noqa: PLC0415

    return (GoogleAPIError, GoogleAuthError, OSError, ValueError)


def _crc(data: bytes) -> int:
    import google_crc32c  # noqa: PLC0415 - a dependency of the Google clients

    return int(google_crc32c.value(data))


def _why(exc: BaseException) -> str:
    return scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
