"""`deploy.sh ... --job --tasks N`: Cloud Run Jobs for fleets past one function, checked through
the recording fake `gcloud` of tests/test_deployment.py (the real cloud is unreachable here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_deployment import (
    JOB_IMAGE,
    PROJECT,
    FakeCloud,
    flags,
    positionals,
    printed_commands,
)

INVOKER = f"ig-story-metrics-invoker@{PROJECT}.iam.gserviceaccount.com"
RUNTIME = f"ig-story-metrics-runtime@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(tmp_path)


def run_uri(job: str) -> str:
    return f"https://run.googleapis.com/v2/projects/{PROJECT}/locations/us-central1/jobs/{job}:run"


def test_job_runs_n_parallel_tasks_with_one_retry_and_a_timeout_above_the_budget(
    cloud: FakeCloud,
) -> None:
    """The hourly job: built from the source with the repo's Dockerfile, N tasks all at once, one
    retry each, a task timeout above the 480 s run budget, the token from Secret Manager."""
    cloud.deploy("production", "--job", "--tasks", "6")
    job = cloud.one_call("run", "jobs", "deploy", "ig-story-metrics-job-prod")
    assert (job["tasks"], job["parallelism"], job["max-retries"]) == ("6", "6", "1")
    assert int(job["task-timeout"].removesuffix("s")) > 480
    assert job["source"] == str(cloud.build_dir)
    assert job["args"] == "run,--all"
    assert job["service-account"] == RUNTIME
    assert "IG_ACCESS_TOKEN=ig-access-token:latest" in job["set-secrets"].split(",")
    assert "STORAGE_URL=gs://chapala-bronze-bucket" in job["set-env-vars"].split(",")
    dockerfile = (cloud.build_dir / "Dockerfile").read_text()
    assert "pip install --no-deps -r requirements.txt" in dockerfile
    assert (cloud.build_dir / "requirements.txt").exists()
    assert cloud.calls_of("functions", "deploy") == []


def test_sweep_job_runs_the_first_jobs_image_with_sweep_args(cloud: FakeCloud) -> None:
    """The sweep is a second job on the image the first one built: `sweep --all`, N tasks, one
    retry, a timeout inside its 10 minutes."""
    cloud.deploy("production", "--job", "--tasks=3")
    sweep = cloud.one_call("run", "jobs", "deploy", "ig-story-metrics-sweep-job-prod")
    assert sweep["image"] == JOB_IMAGE
    assert "source" not in sweep
    assert sweep["args"] == "sweep,--all"
    assert (sweep["tasks"], sweep["max-retries"]) == ("3", "1")
    assert 240 < int(sweep["task-timeout"].removesuffix("s")) < 600


@pytest.mark.parametrize(
    ("scheduler", "job", "schedule"),
    [
        ("ig-story-metrics-scheduler-prod", "ig-story-metrics-job-prod", "0 * * * *"),
        ("ig-story-metrics-sweep-prod", "ig-story-metrics-sweep-job-prod", "5-59/10 * * * *"),
    ],
)
def test_scheduler_starts_executions_through_the_admin_api_with_an_oauth_token(
    cloud: FakeCloud, scheduler: str, job: str, schedule: str
) -> None:
    """Hourly and every 10 minutes, Scheduler POSTs to the job's `:run` with an OAuth token of
    the invoker (not OIDC: the Admin API is a Google API)."""
    cloud.deploy("production", "--job", "--tasks", "2")
    call = cloud.one_call("scheduler", "jobs", "create", "http", scheduler)
    assert call["uri"] == run_uri(job)
    assert call["schedule"] == schedule
    assert call["http-method"] == "POST"
    assert call["oauth-service-account-email"] == INVOKER
    assert call["oauth-token-scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert "oidc-service-account-email" not in call
    assert json.loads(call["message-body"]) == {}


def test_invoker_may_run_the_two_jobs_only(cloud: FakeCloud) -> None:
    """roles/run.invoker is granted on each job, to the invoker, and on nothing else."""
    cloud.deploy("production", "--job", "--tasks", "2")
    grants = cloud.calls_of("run", "jobs", "add-iam-policy-binding")
    assert sorted(positionals(g)[3] for g in grants) == [
        "ig-story-metrics-job-prod",
        "ig-story-metrics-sweep-job-prod",
    ]
    for grant in grants:
        assert flags(grant)["member"] == f"serviceAccount:{INVOKER}"
        assert flags(grant)["role"] == "roles/run.invoker"


def test_job_dry_run_prints_every_command_of_a_first_real_run(cloud: FakeCloud) -> None:
    """--job --dry-run calls nothing and prints exactly the first deployment's gcloud calls (bar
    the image, known only once built)."""
    planned = printed_commands(
        cloud.deploy("production", "--job", "--tasks", "4", "--dry-run").stdout
    )
    assert cloud.calls() == []
    cloud.deploy("production", "--job", "--tasks", "4")
    executed = [[arg.replace(JOB_IMAGE, "IMAGE") for arg in argv] for argv in cloud.calls()]
    assert [[arg.replace("DRY-RUN-JOB-IMAGE", "IMAGE") for arg in a] for a in planned] == executed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("production", "--job"), "--job needs --tasks"),
        (("production", "--job", "--tasks", "0"), "whole number"),
        (("production", "--job", "--tasks", "10001"), "whole number"),
        (("production", "--job", "--tasks", "x"), "whole number"),
        (("production", "--tasks", "4"), "--tasks goes with --job"),
        (("production", "--job", "--tasks"), "--tasks takes a number"),
    ],
)
def test_bad_job_options_are_usage_errors(
    cloud: FakeCloud, args: tuple[str, ...], message: str
) -> None:
    """A missing or bad task count is refused with one line, exit 2, before any call."""
    result = cloud.run("deploy.sh", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cloud.calls() == []
