"""The app's import structure (DESIGN.md, "app"): feature packages, no cycles, nothing upward.

The import graph is grimp's (every ``import`` statement, those inside functions too):

- no module of ``app`` takes part in an import cycle;
- an API module (``app.<feature>.api``, ``…reader_api``) is imported by ``app.main`` only: pages
  and the CLI call services and schemas, never a router;
- the base layer (database, settings, shared helpers) never imports a feature, and no feature
  imports the composition roots (``app.main``, ``app.cli``, ``app.handlers``, ``app.demo_seed``).
"""

from __future__ import annotations

import grimp
import pytest

FEATURES = (
    "accounts",
    "jobs",
    "processing",
    "realism",
    "registry",
    "studies",
    "training",
    "volumes",
)
ROOTS = ("app.main", "app.cli", "app.handlers", "app.demo_seed")
BASE = ("app.db", "app.settings", "app.common", "app.web", "app.exports", "app.errors")
# Where the base layer reaches into a feature: the request dependencies (app.deps) and the page
# helpers (app.web) ask who the caller is, which is the accounts' and the readers' business.
BASE_MAY_IMPORT = {
    "app.deps": ("app.accounts", "app.studies"),
    "app.web": ("app.accounts",),
}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("app", include_external_packages=False)


def _edges(graph) -> dict[str, set[str]]:
    return {
        module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules
    }


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_app(graph):
    assert _cycles(_edges(graph)) == []


def test_every_feature_is_a_package(graph):
    for feature in FEATURES:
        assert f"app.{feature}" in graph.modules, feature


def test_api_modules_are_imported_by_main_only(graph):
    edges = _edges(graph)
    offenders = sorted(
        (module, target)
        for module, targets in edges.items()
        for target in targets
        if target.rsplit(".", 1)[-1] in ("api", "reader_api") and module != "app.main"
    )
    assert offenders == []


def test_base_layer_imports_no_feature(graph):
    edges = _edges(graph)
    offenders = []
    for module, targets in edges.items():
        if not any(_in(module, base) for base in BASE + tuple(BASE_MAY_IMPORT)):
            continue
        allowed = BASE_MAY_IMPORT.get(module, ())
        for target in targets:
            feature = any(_in(target, f"app.{name}") for name in FEATURES)
            if (feature and not any(_in(target, a) for a in allowed)) or target in ROOTS:
                offenders.append((module, target))
    assert offenders == []


def test_features_never_import_the_composition_roots(graph):
    edges = _edges(graph)
    offenders = sorted(
        (module, target)
        for module, targets in edges.items()
        if any(_in(module, f"app.{name}") for name in FEATURES)
        for target in targets
        if any(_in(target, root) for root in ROOTS)
    )
    assert offenders == []


def test_job_rows_are_made_by_enqueue_only():
    """Every job row comes from app.jobs.queue.enqueue (one place sets a new job's fields)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "app"
    makers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Job":
                makers.append(str(path.relative_to(root.parent)))
    assert sorted(set(makers)) == ["app/jobs/queue.py"]
