"""deployment/constraints.txt, the pinned versions a deploy ships, against pyproject.toml.

`make constraints` writes it; these checks run in CI (`make test`), and deploy.yml deploys only
after them. The test environment itself is installed with these pins (Makefile `-c`), so the suite
runs the versions that are deployed.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "deployment" / "constraints.txt"
PIN = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)")


def pin_lines() -> list[str]:
    lines = CONSTRAINTS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def pins() -> dict[str, Version]:
    found = {}
    for line in pin_lines():
        match = PIN.fullmatch(line)
        assert match is not None, line
        found[canonicalize_name(match["name"])] = Version(match["version"])
    return found


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(dep) for dep in project["dependencies"]]


def test_every_line_is_an_exact_pin_of_a_name_and_a_version() -> None:
    """Only `name==version` lines (no range, URL, index option, path or hash), each name once,
    and not the project itself; the header says how the file is made."""
    lines = pin_lines()
    assert lines
    bad = [line for line in lines if PIN.fullmatch(line) is None]
    assert bad == []
    names = [canonicalize_name(line.split("==")[0]) for line in lines]
    assert len(names) == len(set(names))
    assert "ig-story-metrics" not in names
    assert "make constraints" in CONSTRAINTS.read_text(encoding="utf-8").split("\n", 1)[1]


def test_every_runtime_dependency_is_pinned_at_a_version_pyproject_allows() -> None:
    """Each [project] dependency is pinned, at a version inside its range (a bumped lower bound
    without `make constraints` fails here)."""
    pinned = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not pinned: run `make constraints`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} does not satisfy {requirement}: run `make constraints`"
        )


def test_the_test_environment_runs_the_pinned_versions() -> None:
    """Every pinned package is installed here at its pinned version: what the tests exercise is
    what deploys (the Makefile installs with `-c deployment/constraints.txt`)."""
    differ = {}
    for name, version in pins().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ[name] = (str(version), str(installed))
    assert differ == {}, f"pinned vs installed {differ}: run `make .venv/.installed-dev`"


def test_the_pinned_storage_client_still_has_the_private_cache_we_turn_off() -> None:
    """storage/gcs.py turns off google-cloud-storage's background bucket-metadata fetches through
    the private `Client._bucket_metadata_cache`; the pinned version has it, and the lake's client
    has it off. A version bump that renames it fails here, not in production."""
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
    from google.cloud import storage as gcs  # noqa: PLC0415

    from ig_story_metrics.storage.gcs import _make_client  # noqa: PLC0415

    assert Version(metadata.version("google-cloud-storage")) == pins()["google-cloud-storage"]
    plain = gcs.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    ours = _make_client("http://127.0.0.1:9", "test")
    try:
        assert plain._bucket_metadata_cache is not None
        assert ours._bucket_metadata_cache is None
    finally:
        plain.close()
        ours.close()
