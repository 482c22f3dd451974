"""Reading the environment and `.env` (once) into a `Settings`; the only reader of `os.environ`."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from pydantic import ValidationError

from ig_story_metrics.errors import SetupError
from ig_story_metrics.redact import register_secrets
from ig_story_metrics.settings.values import DOTENV, Settings


def log_format() -> str | None:
    """The `LOG_FORMAT` setting, read before anything else so that even a refused start logs in
    the chosen format (an unknown value is reported by `logs.configure`)."""
    return os.environ.get("LOG_FORMAT")


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables a `.env` file sets ({} when there is none); SetupError when it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SetupError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SetupError(
            f"{path} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}): "
            "save it as UTF-8"
        ) from None
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def environment(
    env: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> dict[str, str]:
    """The variables a run sees: `env`, or the process environment over `.env` (read once here).

    With an explicit `env`, no `.env` file is read unless `env_file` names one: tests stay hermetic.
    """
    if env is None:
        return {**read_dotenv(env_file or DOTENV), **os.environ}
    return {**(read_dotenv(env_file) if env_file else {}), **env}


def load_settings(
    env: Mapping[str, str] | None = None, *, env_file: Path | None = None
) -> Settings:
    """Read the settings from `env` (default: the process environment and `.env`)."""
    known: dict[str, Any] = {
        k: v for k, v in environment(env, env_file=env_file).items() if k in _ALIASES
    }
    try:
        settings = Settings(**known)
    except ValidationError as exc:
        raise SetupError(_describe(exc)) from None
    # The app secret is masked in every text that leaves the process, from the moment it is known.
    if settings.app_secret is not None:
        register_secrets([settings.app_secret.get_secret_value()])
    return settings


_ALIASES = {
    str(f.validation_alias)
    for f in Settings.model_fields.values()
    if f.validation_alias is not None
}


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"])
    if first["type"] == "value_error":  # our own checks: said as they are, named by the setting
        message = str(first["ctx"]["error"])
        return message if not name or name in message else f"invalid setting {name}: {message}"
    return f"invalid setting {name or 'settings'}: {first['msg']}"
