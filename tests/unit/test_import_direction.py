"""Imports go one way: config ← tasks ← api / worker_host ← hwq (README, "Project layout").

Each package below `hwq` is imported alone in a fresh interpreter, first by itself (what `python -c
"import tasks"` shows anyone), then with every module in it, and the project packages that
came along are compared with the ones it may use.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"config", "tasks", "api", "worker_host", "hwq", "bench", "tests"}
# What each package may load of the project, itself included.
ALLOWED = {
    "config": {"config"},
    "tasks": {"config", "tasks"},
    "api": {"config", "tasks", "api"},
    "worker_host": {"config", "tasks", "worker_host"},
}
# Modules that do something when imported: `python -m` entry points, and alembic's env, which
# runs migrations against the configured database.
SKIP_SUFFIXES = (".__main__", ".migrations.env")

LOADED = f"""
import importlib, json, pkgutil, sys
name, every_module = sys.argv[1], sys.argv[2] == "all"
package = importlib.import_module(name)
if every_module:
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if not info.name.endswith({SKIP_SUFFIXES!r}):
            importlib.import_module(info.name)
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""


def _project_packages_loaded(package: str, every_module: bool) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOADED, package, "all" if every_module else "one"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(result.stdout)) & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_importing_a_package_alone_loads_only_what_is_below_it(package: str) -> None:
    assert _project_packages_loaded(package, every_module=False) <= ALLOWED[package]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_every_module_of_a_package_loads_only_what_is_below_it(package: str) -> None:
    assert _project_packages_loaded(package, every_module=True) <= ALLOWED[package]

