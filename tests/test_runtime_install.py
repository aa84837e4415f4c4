"""The runtime dependencies are complete: the project installed WITHOUT extras starts and serves.

A fresh virtual environment gets exactly the distributions that ``syntumor``'s own requirements
(no extras) pull in, taken offline from this environment (hard links of their installed files,
so nothing is downloaded and torch stays the local CPU build). pip then installs the project
(editable, as the Dockerfile does) into it with ``--no-index``: a requirement that the runtime
set does not satisfy fails the install. In that environment

- every module that ``app/`` and ``syntumor_core/`` import (at the top of a file or inside a
  function) must be found, except imports guarded by ``try: … except ImportError``;
- ``syntumor serve`` starts on a free port and answers ``/healthz``, ``/`` and ``/docs``.

So a runtime import of a package that only an extra (e.g. ``test``) installs fails here.
"""

from __future__ import annotations

import ast
import email.parser
import importlib.metadata as metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from tests.live_server import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PROJECT = "syntumor"
PACKAGES = ("app", "syntumor_core")
# What the editable install needs from the tree besides the packages (copied or linked).
PROJECT_FILES = ("pyproject.toml", "README.md")
RUNTIME_DIRS = ("static", "templates", "models", "node_modules")
START_TIMEOUT_S = 180.0


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.parser.BytesParser().parsebytes(archive.read(name))
    return message.get_all("Requires-Dist") or []


def _wanted(requirement: Requirement, extras) -> bool:
    return requirement.marker is None or any(
        requirement.marker.evaluate({**default_environment(), "extra": extra})
        for extra in ("", *sorted(extras))
    )


def runtime_closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """The distributions installed here that ``requirements`` without extras pull in
    (transitively, with the extras those requirements name), by canonical name."""
    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}

    def visit(name: str, extras: frozenset[str]) -> None:
        key = canonical(name)
        if key in extras_seen and extras <= extras_seen[key]:
            return
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is required but not installed here: run `make setup`")
        found[key] = distribution
        extras_seen.setdefault(key, set()).update(extras)
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if _wanted(requirement, extras):
                visit(requirement.name, frozenset(requirement.extras))

    for line in requirements:
        requirement = Requirement(line)
        if _wanted(requirement, ()):
            visit(requirement.name, frozenset(requirement.extras))
    return found


def extra_only(requirements: list[str], extra: str, runtime: dict) -> set[str]:
    """Names that ``extra`` adds to ``requirements`` beyond the runtime set."""
    names = set()
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate(
            {**default_environment(), "extra": extra}
        ):
            if canonical(requirement.name) not in runtime:
                names.add(canonical(requirement.name))
    return names


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    if handler.type is None:
        return True
    for node in ast.walk(handler.type):
        if isinstance(node, ast.Name):
            names.append(node.id)
    return bool({"ImportError", "ModuleNotFoundError", "Exception"} & set(names))


def imported_modules(roots: list[Path]) -> dict[str, list[str]]:
    """Top-level module names imported anywhere in the ``.py`` files under ``roots``, with the
    files that import them; imports in a ``try`` that catches ImportError and under
    ``if TYPE_CHECKING:`` are optional and left out."""
    modules: dict[str, list[str]] = {}

    def walk(node: ast.AST, path: str) -> None:
        if isinstance(node, ast.Try) and any(map(_catches_import_error, node.handlers)):
            for child in node.handlers + node.orelse + node.finalbody:
                walk(child, path)
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                walk(child, path)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and path not in modules.get(top, []):
                modules.setdefault(top, []).append(path)
        for child in ast.iter_child_nodes(node):
            walk(child, path)

    for root in roots:
        for path in sorted(root.rglob("*.py")):
            walk(ast.parse(path.read_text(encoding="utf-8")), str(path.relative_to(root.parent)))
    return modules


def link_distribution(distribution: metadata.Distribution, site_packages: Path) -> int:
    """Hard-link (or copy) an installed distribution's files into ``site_packages``."""
    count = 0
    for file in distribution.files or []:
        if file.parts[0] == "..":  # scripts and data outside site-packages: not needed
            continue
        source = Path(distribution.locate_file(file))
        if not source.is_file():
            continue
        target = site_packages / file
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(source, target)
        count += 1
    return count


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Python, pip, virtualenv and SynTumor settings."""
    keep = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "PIP_", "SYNTUMOR_", "VIRTUAL_ENV", "PYTEST", "COV_"))
    }
    return {**keep, "PYTHONNOUSERSITE": "1", "PIP_CONFIG_FILE": os.devnull, **extra}


def copy_project(target: Path) -> Path:
    """The packages and build files copied to ``target`` (the runtime folders linked), so that
    building the editable wheel writes nothing into the working tree."""
    target.mkdir()
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, target / name)
    for name in PACKAGES:
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in RUNTIME_DIRS:
        if (REPO / name).exists():
            (target / name).symlink_to(REPO / name, target_is_directory=True)
    return target


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


CHECK_SCRIPT = """
import importlib.util, json, sys
missing = {name: files for name, files in json.loads(sys.argv[1]).items()
           if importlib.util.find_spec(name) is None}
print(json.dumps(missing))
"""


def install_runtime_only(root: Path) -> dict:
    """A fresh venv under ``root`` with the runtime set and the project (editable)."""
    # The project: an editable wheel built here (this env has setuptools and wheel) from a copy
    # of the tree, so its requirements are the current pyproject.toml's.
    source = copy_project(root / "src")
    wheels = root / "wheels"
    wheels.mkdir()
    run(
        [sys.executable, "-c",
         f"from setuptools import build_meta; build_meta.build_editable({str(wheels)!r})"],
        cwd=source, env=clean_environment(),
    )  # fmt: skip
    (wheel,) = wheels.glob(f"{PROJECT}-*.whl")
    requirements = wheel_requirements(wheel)

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site_packages = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=clean_environment()).stdout.strip()
    )  # fmt: skip
    runtime = runtime_closure(requirements)
    for key, distribution in runtime.items():
        if key != PROJECT:
            link_distribution(distribution, site_packages)

    # pip installs the project, its requirements resolved against what is there, no index.
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    run([*pip, "install", "--no-index", "--no-input", wheel], env=clean_environment())
    run([*pip, "check"], env=clean_environment())
    installed = json.loads(
        run([*pip, "list", "--format", "json"], env=clean_environment()).stdout
    )  # fmt: skip
    return {
        "venv": venv,
        "python": python,
        "installed": {canonical(item["name"]) for item in installed},
        "runtime": runtime,
        "requirements": requirements,
    }


def check_runtime_set(installed: set[str], runtime: dict, requirements: list[str]) -> None:
    assert PROJECT in installed
    assert {"torch", "fastapi", "uvicorn", "numpy"} <= installed
    test_only = extra_only(requirements, "test", runtime)
    assert test_only, "the test extra should add packages (pytest, …) beyond the runtime set"
    assert not (installed & test_only), f"test-only packages leaked in: {installed & test_only}"
    assert installed <= set(runtime) | {PROJECT}, installed - set(runtime)


def check_imports(python: Path, root: Path) -> None:
    modules = imported_modules([REPO / name for name in PACKAGES])
    result = run(
        [python, "-c", CHECK_SCRIPT, json.dumps(modules)], env=clean_environment(), cwd=root
    )
    missing = json.loads(result.stdout.strip().splitlines()[-1])
    assert not missing, (
        "imported by the code but not installed by the project's runtime dependencies "
        f"(add them to [project] dependencies): {missing}"
    )


def check_serve(venv: Path, root: Path) -> float:
    """Start ``syntumor serve`` from ``venv``; GET /healthz, / and /docs. Returns the start
    time in seconds."""
    log_path = root / "serve.log"
    port = free_port()
    env = clean_environment(SYNTUMOR_DATA_DIR=str(root / "data"))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    started = time.monotonic()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [venv / "bin" / "syntumor", "serve", "--port", str(port)],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-6000:]

    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=10, follow_redirects=True
        ) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert server.poll() is None, f"syntumor serve exited:\n{log_tail()}"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (
                    f"no /healthz in {START_TIMEOUT_S} s:\n{log_tail()}"
                )
                time.sleep(0.3)
            start_s = time.monotonic() - started
            home = client.get("/")
            assert home.status_code == 200, home.text[:2000]
            assert "<html" in home.text.lower()
            docs = client.get("/docs")
            assert docs.status_code == 200 and "swagger" in docs.text.lower(), docs.text[:2000]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    return start_s


def test_runtime_only_install_imports_and_serves(tmp_path):
    started = time.monotonic()
    env = install_runtime_only(tmp_path)
    install_s = time.monotonic() - started
    check_runtime_set(env["installed"], env["runtime"], env["requirements"])
    check_imports(env["python"], tmp_path)
    start_s = check_serve(env["venv"], tmp_path)
    print(
        f"runtime-only install {install_s:.1f} s ({len(env['installed'])} distributions), "
        f"server up in {start_s:.1f} s, all {time.monotonic() - started:.1f} s"
    )
