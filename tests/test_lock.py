"""The lock files cover pyproject's dependencies with hashes, and the image and CI share their pins.

requirements.lock (the image: `pip install --require-hashes`) must pin every runtime dependency,
requirements-test.lock (`./dev`) every runtime and test dependency, each at a version its
specifier allows, with the dependencies of requested extras (uvicorn[standard]) pinned too; and
every package both locks pin, they pin alike. `./dev lock` regenerates them.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements.lock"
TEST_LOCK = ROOT / "requirements-test.lock"
# The image's interpreter and platform, for which the locks are made.
TARGET = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython", "os_name": "posix"}  # fmt: skip
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock_text: str) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of every package a requirements lock pins."""
    result: dict[str, tuple[str, int]] = {}
    current = None
    for line in lock_text.splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            result[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = result[current]
            result[current] = (version, hashes + 1)
        elif not line.startswith((" ", "\t")):
            current = None
    return result


def requirements(pyproject_text: str, *extras: str) -> list[Requirement]:
    project = tomllib.loads(pyproject_text)["project"]
    found = [Requirement(r) for r in project.get("dependencies", [])]
    for extra in extras:
        found += [Requirement(r) for r in project.get("optional-dependencies", {}).get(extra, [])]
    return [r for r in found if r.marker is None or r.marker.evaluate(TARGET)]


def extra_requirements(requirement: Requirement) -> list[Requirement]:
    """The dependencies a requirement's extras add, as the installed distribution declares them."""
    declared = [Requirement(r) for r in importlib.metadata.requires(requirement.name) or []]
    return [r for r in declared if r.marker is not None and any(
        r.marker.evaluate({**TARGET, "extra": extra}) and not r.marker.evaluate({**TARGET, "extra": ""})
        for extra in requirement.extras)]  # fmt: skip


def problems(pyproject_text: str, lock_text: str, *extras: str) -> list[str]:
    """What a lock lacks for pyproject's dependencies (and those `extras`): missing, wrong version, no hash."""
    locked = pins(lock_text)
    wanted = requirements(pyproject_text, *extras)
    wanted += [r for req in wanted if req.extras for r in extra_requirements(req)]
    found = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name not in locked:
            found.append(f"{req} is not in the lock")
            continue
        version, hashes = locked[name]
        if not req.specifier.contains(version, prereleases=True):
            found.append(f"{req} is locked at {version}")
        if hashes == 0:
            found.append(f"{name}=={version} has no hash")
    return found


def pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def test_the_image_lock_pins_every_runtime_dependency_with_hashes():
    assert problems(pyproject(), RUNTIME_LOCK.read_text()) == []


def test_the_test_lock_pins_every_runtime_and_test_dependency_with_hashes():
    assert problems(pyproject(), TEST_LOCK.read_text(), "test") == []


def test_every_locked_package_has_a_hash_and_both_locks_pin_shared_packages_alike():
    runtime, test = pins(RUNTIME_LOCK.read_text()), pins(TEST_LOCK.read_text())
    assert [n for n, (_, hashes) in {**runtime, **test}.items() if hashes == 0] == []
    assert {n: v for n, (v, _) in runtime.items() if test.get(n, (v,))[0] != v} == {}
    assert set(runtime) <= set(test), "the test lock is the image's lock plus the test extras"


@pytest.mark.parametrize(
    "change, expected",
    [
        ('"rich>=13",', '"rich>=13",\n    "zstandard>=0.22",'),  # a new dependency the lock lacks
        ('"pyyaml>=6",', '"pyyaml>=99",'),  # a raised floor the locked version misses
    ],
)
def test_a_dependency_added_to_pyproject_without_relocking_is_caught(change, expected):
    text = pyproject()
    assert change in text
    found = problems(text.replace(change, expected), RUNTIME_LOCK.read_text())
    assert len(found) == 1 and ("zstandard" in found[0] or "pyyaml" in found[0]), found


def test_a_lock_entry_without_hashes_is_caught():
    stripped = "\n".join(line for line in RUNTIME_LOCK.read_text().splitlines() if "--hash" not in line)
    assert any("no hash" in p for p in problems(pyproject(), stripped.replace(" \\", "")))


def test_the_image_and_dev_install_the_locks_with_hashes_and_nothing_else_resolved():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
    dev = (ROOT / "dev").read_text()
    assert "--require-hashes -r requirements-test.lock" in dev and "--no-deps -e ." in dev
