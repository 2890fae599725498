"""The layering rules of docs/ARCHITECTURE.md, checked on the source text of every module.

Each module of the project is parsed (``ast``, nothing is imported) and its imports are resolved to
project modules or third-party top-level packages. Function-level imports count as much as
module-level ones: a deferred import still makes the importing module depend on the imported one
(it only postpones the failure), so the rules and the cycle check see both.

Rules:
- the domain core (``noderr_core``) imports no web, pipeline, CLI or dev-server framework and no
  other project package but the protocol;
- ``api`` and ``noderr_pipelines`` (the two service adapters) never import each other;
- ``node_service`` imports only ``noderr_protocol`` from the project;
- no import cycles between modules of the project;
- no module imports a test module or a conftest (shared helpers live in plain `tests/support`
  modules; fixtures only in conftest.py files), so bench and the demo never import pytest files.

Imports guarded by ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = (
    "api", "bench", "node_service", "noderr_cli", "noderr_core", "noderr_demo", "noderr_local",
    "noderr_pipelines", "noderr_protocol", "tests",
)
FRAMEWORKS_BANNED_IN_CORE = {"fastapi", "starlette", "dagster", "click", "aiosmtpd", "uvicorn"}
PROJECT_BANNED_IN_CORE = {
    "api", "bench", "node_service", "noderr_cli", "noderr_demo", "noderr_local", "noderr_pipelines",
    "tests",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts and "versions" in path.parts:
                continue  # Alembic revisions are loaded by Alembic, not imported
            modules[_module_name(path)] = path
    return modules


MODULES = _project_modules()


def _is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(module: str, path: Path) -> set[str]:
    """Absolute dotted names this module imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking_guard(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # `from package import submodule` imports the submodule too.
            for alias in node.names:
                candidate = f"{prefix}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


IMPORTS = {module: _imported_names(module, path) for module, path in MODULES.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _project_edges(module: str) -> set[str]:
    """Project modules this module depends on (a name resolves to its longest known module)."""
    edges = set()
    for name in IMPORTS[module]:
        parts = name.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        if parts and ".".join(parts) != module:
            edges.add(".".join(parts))
    return edges


def _violations(package: str, banned: set[str]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in IMPORTS.items()
        if _top(module) == package
        for name in names
        if _top(name) in banned
    )


def test_the_checker_sees_the_project():
    # A checker that finds no modules passes every rule; make sure it reads the real tree.
    assert "noderr_core.outbox" in MODULES
    assert "noderr_core.settings" in IMPORTS["noderr_core.db"]
    assert "dagster" in {_top(name) for name in IMPORTS["noderr_pipelines.definitions"]}


def test_core_imports_no_framework_and_no_adapter():
    assert _violations("noderr_core", FRAMEWORKS_BANNED_IN_CORE | PROJECT_BANNED_IN_CORE) == []


@pytest.mark.parametrize(("package", "other"), [("api", "noderr_pipelines"), ("noderr_pipelines", "api")])
def test_service_adapters_never_import_each_other(package, other):
    assert _violations(package, {other}) == []


def test_node_service_imports_only_the_protocol_from_the_project():
    allowed = {"node_service", "noderr_protocol"}
    banned = set(PROJECT_PACKAGES) - allowed
    assert _violations("node_service", banned) == []


def _unresolved_project_imports(imports: dict[str, set[str]] = IMPORTS) -> list[str]:
    """Project imports that name no module, package or attribute of the project (stale paths)."""
    missing = []
    for module, names in imports.items():
        for name in names:
            if _top(name) not in PROJECT_PACKAGES or name in MODULES:
                continue
            # `from package import name`: the name must be defined in that package's __init__.
            parent, _, attr = name.rpartition(".")
            if parent in MODULES and _defines(parent, attr):
                continue
            missing.append(f"{module} imports {name}")
    return sorted(missing)


def _defines(module: str, name: str) -> bool:
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
        if isinstance(node, ast.Import | ast.ImportFrom):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def test_every_project_import_names_something_that_exists():
    # A moved module leaves stale imports behind; function-level ones only fail when they run.
    assert _unresolved_project_imports() == []
    stale = {"noderr_demo.stack": {"noderr_core.mailbox", "noderr_local.mailbox"}}
    assert _unresolved_project_imports(stale) == ["noderr_demo.stack imports noderr_core.mailbox"]


def _is_test_module(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_no_module_imports_a_test_module_or_a_conftest():
    offenders = sorted(
        f"{module} imports {name}"
        for module in MODULES
        for name in _project_edges(module)
        if _is_test_module(name)
    )
    assert offenders == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other (directly or round a loop)."""
    # Tarjan's strongly connected components; any component with more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def connect(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            connect(module)
    return sorted(cycles)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"x": {"y"}, "y": {"x"}}) == [["x", "y"]]


def test_no_import_cycles_between_project_modules():
    graph = {module: _project_edges(module) for module in MODULES}
    assert _cycles(graph) == []
