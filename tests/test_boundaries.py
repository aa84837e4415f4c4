"""The core never imports the application (DESIGN.md, STYLE.md)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = (
    "app",
    "fastapi",
    "sqlalchemy",
    "alembic",
    "starlette",
    "jinja2",
    "pydantic_settings",
    "uvicorn",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_the_app_or_web_code():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(FORBIDDEN))
        for path in (ROOT / "syntumor_core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


_IMPORT_EVERYTHING = """
import json, pkgutil, sys, importlib
import syntumor_core
names = [info.name for info in pkgutil.walk_packages(syntumor_core.__path__, "syntumor_core.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_importing_every_core_module_loads_no_app_or_web_code():
    """What the core drags in at run time, not only what its files name: in a fresh
    interpreter, ``syntumor_core`` and every submodule imported, and no application or web
    package among the loaded modules (an indirect import would show up here)."""
    completed = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "syntumor_core.segmentation.predictor" in report["modules"]  # the walk went deep
    assert sorted(set(report["loaded"]) & set(FORBIDDEN)) == []


def test_core_reads_no_environment_and_prints_nothing():
    for path in (ROOT / "syntumor_core").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.environ" not in text and "getenv" not in text, path
        tree = ast.parse(text)
        calls = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "print"
        ]
        assert not calls, f"print() in {path}"


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_core_uses_no_global_random_state():
    allowed = {
        "np.random.default_rng",
        "np.random.Generator",
        "np.random.SeedSequence",
        "numpy.random.default_rng",
    }
    for path in (ROOT / "syntumor_core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {_dotted(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        global_state = {
            c
            for c in calls
            if (c.startswith(("np.random.", "numpy.random.")) and c not in allowed)
            or c
            in {"torch.manual_seed", "torch.seed", "random.seed", "random.random", "random.randint"}
        }
        assert not global_state, f"{path}: {sorted(global_state)}"
