"""The house rules hold, and their checks can fail: import-linter contracts, the environment ban,
module sizes, the version, and a README that names every CLI command."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.main import get_command

from ig_story_metrics import __version__
from ig_story_metrics.cli import app

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "ig_story_metrics"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
RUFF = Path(sys.executable).parent / "ruff"


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package to break on purpose."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(PACKAGE, src / "ig_story_metrics", ignore=shutil.ignore_patterns("__pycache__"))
    return src


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("model/story.py", "import httpx", "Only graph/ speaks HTTP"),
        ("graph/payload.py", "from ig_story_metrics.storage import lake", "Data flows one way"),
        ("model/metrics.py", "from ig_story_metrics import settings", "Data flows one way"),
        ("jobs/hourly.py", "import rich", "typer, rich, flask"),
        ("report/models.py", "import google.cloud.storage", "Only storage/ touches Google"),
        ("simulator/faults.py", "from ig_story_metrics import redact", "The simulator imports"),
    ],
)
def test_lint_imports_fails_when_a_rule_is_broken(
    package_copy: Path, module: str, line: str, contract: str
) -> None:
    """Each contract of pyproject.toml catches an import that breaks it."""
    target = package_copy / "ig_story_metrics" / module
    original = target.read_text()
    target.write_text(original + f"\n{line}  # broken on purpose\n")
    try:
        result = lint_imports(package_copy)
    finally:
        target.write_text(original)
    assert result.returncode != 0
    broken = result.stdout.split("BROKEN")[0]
    assert contract in broken.replace("\n", " ") or contract in result.stdout


def test_lint_imports_passes_on_the_house() -> None:
    """The package as committed keeps every contract."""
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def test_only_settings_may_read_the_environment() -> None:
    """ruff's banned-API rule refuses os.environ anywhere in the package but settings.py."""
    code = "import os\n\nVALUE = os.environ.get('X')\n"
    for name, banned in (("storage/lake.py", True), ("settings/environment.py", False)):
        result = subprocess.run(
            [
                str(RUFF),
                "check",
                "--stdin-filename",
                str(PACKAGE / name),
                "--select",
                "TID251",
                "-",
            ],
            input=code,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode != 0) is banned, result.stdout
        assert ("TID251" in result.stdout) is banned


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_modules_and_functions_stay_small() -> None:
    """No module over ~350 lines, no function over ~60 (the simulator's route table excepted)."""
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        relative = path.relative_to(PACKAGE)
        if len(text.splitlines()) > 360 and relative.parts[0] != "simulator":
            too_long.append(f"{relative}: {len(text.splitlines())} lines")
        for fn in _functions(ast.parse(text)):
            length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if length > 65:
                too_long.append(f"{relative}:{fn.name}: {length} lines")
    assert too_long == []


def test_version_matches_the_package_metadata() -> None:
    """`--version` prints the version pyproject.toml declares."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == declared
    result = subprocess.run(
        [sys.executable, "-m", "ig_story_metrics", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"ig-story-metrics {declared}"


def _commands() -> list[str]:
    group = get_command(app)
    names: list[str] = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            names += [f"{name} {sub}" for sub in subcommands]
        else:
            names.append(name)
    return names


def test_the_readme_documents_every_cli_command() -> None:
    """Every command of the CLI appears in the README as `ig-story-metrics COMMAND`."""
    readme = (ROOT / "README.md").read_text()
    missing = [
        name
        for name in _commands()
        if not re.search(rf"ig-story-metrics {re.escape(name)}\b", readme)
    ]
    assert missing == []
