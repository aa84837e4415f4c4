"""`scripts/system-packages.sh` (run by `make test` and `.ci/run`): names what is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "system-packages.sh"


def _path_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH holding only ``tools`` (links to the real programs)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        (folder / tool).symlink_to(shutil.which(tool))
    return str(folder)


def test_missing_packages_are_named_with_the_command_when_it_cannot_install(tmp_path):
    # No chromium, no g++ and no apt-get on this PATH: the script cannot install and says so.
    path = _path_with(tmp_path, ["bash", "ls", "sort", "tail", "id"])
    run = subprocess.run(["bash", str(SCRIPT)], env={"PATH": path}, capture_output=True, text=True)
    assert run.returncode == 1
    assert "chromium g++" in run.stderr
    assert "apt-get install -y --no-install-recommends chromium g++" in run.stderr


def test_nothing_to_do_when_every_package_is_there(tmp_path):
    tools = ["bash", "ls", "sort", "tail", "id", "chromium", "g++"]
    if not all(shutil.which(tool) for tool in tools):
        missing = [tool for tool in tools if not shutil.which(tool)]
        raise AssertionError(f"`make test` installs these before the tests: {missing}")
    path = _path_with(tmp_path, tools)
    run = subprocess.run(["bash", str(SCRIPT)], env={"PATH": path}, capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
