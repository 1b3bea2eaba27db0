"""The installed packages are the versions constraints.txt pins, and the pins fit pyproject.

hwq subclasses kombu's transport and reaches into celery, kombu and redis-py internals, so it
is tested with exact versions; a release it was not tested with must fail here first.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "constraints.txt"
# The extras `make test` installs, whose requirements the lock must pin as well.
TESTED_EXTRAS = ("dev", "embedded", "postgres")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, separator, version = line.partition("==")
            assert separator and version, f"constraints.txt pins exactly, not {line!r}"
            pins[_normalized(name)] = version.strip()
    return pins


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_every_installed_locked_package_is_at_its_locked_version() -> None:
    locked = _locked()
    assert {"celery", "kombu", "redis"} <= set(locked)
    # A package absent here (the dev ones in the Docker image) cannot differ.
    installed = {name: _installed_version(name) for name in locked}
    differ = {
        name: f"installed {installed[name]}, locked {version}"
        for name, version in locked.items()
        if installed[name] is not None and installed[name] != version
    }
    assert not differ, f"`make test` installs the locked ones, `make lock` pins anew: {differ}"


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    requirements = [Requirement(text) for text in metadata.requires("hwq") or []]
    outside = []
    for requirement in requirements:
        wanted = requirement.marker is None or any(
            requirement.marker.evaluate({"extra": extra}) for extra in ("", *TESTED_EXTRAS)
        )
        if not wanted:
            continue
        version = locked.get(_normalized(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{requirement} (locked: {version})")
    assert requirements and not outside, f"constraints.txt is stale, run `make lock`: {outside}"


def test_the_makefile_and_the_dockerfile_install_with_the_lock() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^PIP_INSTALL := .* --constraint \$\(CONSTRAINTS\)$", makefile, re.M)
    for stamp in (".installed-run", ".installed-dev"):
        rule = re.search(rf"^\$\(VENV\)/{stamp}: (.*)\n((?:\t.*\n)+)", makefile, re.M)
        assert rule is not None, stamp
        # A changed lock installs again; every install goes through PIP_INSTALL.
        assert "$(CONSTRAINTS)" in rule[1] and "pip install" not in rule[2], stamp
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = re.search(r"^COPY .*\bconstraints\.txt\b", dockerfile, re.M)
    wheels = re.search(r"^RUN pip wheel .*--constraint constraints\.txt", dockerfile, re.M)
    assert copied and wheels and copied.start() < wheels.start()
