"""The settings object: every variable of DESIGN.md's table, validated once, frozen."""

from __future__ import annotations

import ipaddress
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ig_story_metrics.model.location import (
    DEFAULT_STORAGE_URL,
    StorageLocation,
    parse_storage_url,
)
from ig_story_metrics.model.metrics import EXTRA_METRICS
from ig_story_metrics.model.shards import MAX_SHARDS, Shard

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOTENV = Path(".env")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class Settings(BaseModel):
    """The process-wide settings (see the table in DESIGN.md)."""

    # `.env` is read by `environment()`, once, for the settings and the tokens alike.
    # A plain model: `environment.load_settings` hands it the variables by name (pydantic-settings
    # would read the environment again itself, and its import alone costs a third of a second
    # at every start).
    model_config = ConfigDict(extra="ignore", frozen=True)

    access_token: SecretStr | None = Field(default=None, validation_alias="IG_ACCESS_TOKEN")
    accounts_file: Path = Field(default=Path("accounts.toml"), validation_alias="IG_ACCOUNTS_FILE")
    graph_api_url: str = Field(
        default="https://graph.facebook.com", validation_alias="IG_GRAPH_API_URL"
    )
    graph_api_version: str = Field(
        default="v25.0", pattern=r"^v\d+\.\d+$", validation_alias="IG_GRAPH_API_VERSION"
    )
    # Accounts with `login = "instagram"` are read from this host (Instagram Login).
    instagram_api_url: str = Field(
        default="https://graph.instagram.com", validation_alias="IG_INSTAGRAM_API_URL"
    )
    # The Meta app: appsecret_proof on every call, debug_token's app token, token renewal.
    app_id: str | None = Field(default=None, pattern=r"^[0-9]{1,32}$", validation_alias="IG_APP_ID")
    app_secret: SecretStr | None = Field(default=None, validation_alias="IG_APP_SECRET")
    # The story_insights webhook receiver's handshake token (App Dashboard > Webhooks).
    webhook_verify_token: SecretStr | None = Field(
        default=None, validation_alias="IG_WEBHOOK_VERIFY_TOKEN"
    )
    # Checked strictly at start (model/location.py): a typo must not send the lake elsewhere.
    storage_url: str = Field(default=DEFAULT_STORAGE_URL, validation_alias="STORAGE_URL")
    max_concurrent_accounts: int = Field(
        default=200, ge=1, le=2000, validation_alias="IG_MAX_CONCURRENT_ACCOUNTS"
    )
    request_timeout_seconds: float = Field(
        default=30.0, gt=0, validation_alias="IG_REQUEST_TIMEOUT_SECONDS"
    )
    # Retries and throttling (graph/throttle.py): a Cloud Function has a deadline, so every wait
    # and retry of a run fits in one time budget.
    run_budget_seconds: float = Field(default=480.0, gt=0, validation_alias="IG_RUN_BUDGET_SECONDS")
    max_attempts: int = Field(default=5, ge=1, le=20, validation_alias="IG_MAX_ATTEMPTS")
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, validation_alias="IG_BACKOFF_BASE_SECONDS"
    )
    backoff_max_seconds: float = Field(
        default=60.0, gt=0, validation_alias="IG_BACKOFF_MAX_SECONDS"
    )
    usage_pause_percent: float = Field(
        default=80.0, gt=0, le=100, validation_alias="IG_USAGE_PAUSE_PERCENT"
    )
    # Opt-in metrics asked with the plain ones: a comma list of names from EXTRA_METRICS.
    extra_metrics: tuple[str, ...] = Field(default=(), validation_alias="IG_EXTRA_METRICS")

    @field_validator("extra_metrics", mode="before")
    @classmethod
    def _metric_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
        unknown = [n for n in names if n not in EXTRA_METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(EXTRA_METRICS)}"
            )
        return names

    # The sweep (jobs/sweep.py) snapshots the stories expiring within this many minutes; with a
    # sweep every 10 minutes, 12 leaves 2 minutes for a late start.
    sweep_window_minutes: float = Field(
        default=12.0, gt=0, le=120, validation_alias="IG_SWEEP_WINDOW_MINUTES"
    )
    # The media archive (jobs/archive.py): each story's image or video, at first sight, into the
    # lake; downloads are bounded in number and size, outside the Graph API's rate limits.
    archive_media: bool = Field(default=True, validation_alias="IG_ARCHIVE_MEDIA")
    media_max_mb: float = Field(default=200.0, gt=0, le=4096, validation_alias="IG_MEDIA_MAX_MB")
    media_concurrency: int = Field(default=16, ge=1, le=64, validation_alias="IG_MEDIA_CONCURRENCY")
    # The platform's and the Google libraries' own variables, read here like every other setting.
    storage_emulator_host: str | None = Field(
        default=None, validation_alias="STORAGE_EMULATOR_HOST"
    )
    google_cloud_project: str | None = Field(default=None, validation_alias="GOOGLE_CLOUD_PROJECT")
    # Secret Manager's address for tests (a fake of its REST API); unset: the real service.
    secret_manager_emulator_host: str | None = Field(
        default=None, validation_alias="SECRET_MANAGER_EMULATOR_HOST"
    )
    k_service: str | None = Field(default=None, validation_alias="K_SERVICE")
    # Cloud Run Jobs: the job's name, and this task's place among the execution's parallel tasks
    # (each task captures the accounts of its shard).
    cloud_run_job: str | None = Field(default=None, validation_alias="CLOUD_RUN_JOB")
    cloud_run_task_index: int | None = Field(
        default=None, ge=0, validation_alias="CLOUD_RUN_TASK_INDEX"
    )
    cloud_run_task_count: int | None = Field(
        default=None, ge=1, le=MAX_SHARDS, validation_alias="CLOUD_RUN_TASK_COUNT"
    )

    @field_validator("graph_api_url", "instagram_api_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        problem = http_url_problem(url)
        if problem:
            raise ValueError(problem)
        return url

    @field_validator("storage_url")
    @classmethod
    def _storage_url_parses(cls, value: str) -> str:
        return parse_storage_url(value).url  # a ValueError names the value and the forms

    @property
    def task_shard(self) -> Shard | None:
        """This Cloud Run Jobs task's shard (CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT)."""
        if self.cloud_run_task_count is None:
            return None
        return Shard(self.cloud_run_task_index or 0, self.cloud_run_task_count)

    @model_validator(mode="after")
    def _task_in_range(self) -> Settings:
        try:
            self.task_shard  # noqa: B018 - validated by building it
        except ValueError as exc:
            raise ValueError(f"CLOUD_RUN_TASK_INDEX/CLOUD_RUN_TASK_COUNT: {exc}") from None
        return self

    @model_validator(mode="after")
    def _storage_is_usable_here(self) -> Settings:
        location = self.storage
        platform = (
            f"K_SERVICE={self.k_service}"
            if self.k_service
            else f"CLOUD_RUN_JOB={self.cloud_run_job}"
            if self.cloud_run_job
            else None
        )
        if location.is_local and platform:
            raise ValueError(
                f"STORAGE_URL {self.storage_url!r} is a local folder, but this runs on Cloud "
                f"Functions / Cloud Run ({platform}), whose disk is lost after "
                "the run: set STORAGE_URL=gs://BUCKET[/PREFIX]"
            )
        if location.is_local:
            problem = local_folder_problem(Path(location.path).expanduser())
            if problem:
                raise ValueError(f"STORAGE_URL {self.storage_url!r} {problem}")
        return self

    @property
    def storage(self) -> StorageLocation:
        """Where the lake lives (`storage_url`, already validated)."""
        return parse_storage_url(self.storage_url)


def http_url_problem(url: str) -> str | None:
    """Why `url` is not an http(s) base URL with a valid host and port, or None when it is."""
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        return "must be an http(s) URL without spaces, line breaks or non-ASCII characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials (user:password@)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query or a fragment"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port (1 to 65535)"
    if port == 0:
        return "has an invalid port (1 to 65535)"
    if not _valid_host(parts.hostname or ""):
        return "has no valid host name or IP address"
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.rstrip(".").split(".")
        return 0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
    return True


def local_folder_problem(path: Path) -> str | None:
    """Why `path` cannot be the lake's folder (a file, a device, ...), or None: a folder, or
    nothing yet (created on the first write)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return f"cannot be a folder: a part of {path} is a file"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return None
    if stat.S_ISREG(mode):
        return f"is a file, not a folder ({path})"
    return f"is a device or special file, not a folder ({path})"
