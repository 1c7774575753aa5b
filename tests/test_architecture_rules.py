"""Structure of src/rspnet, read with `ast`: stages do not import stages, no import cycles, short functions.

Imports count at any depth (inside functions too), and so do `importlib.import_module("rspnet...")`
calls with a literal (or f-string) module name. And the layout of tests/: it mirrors the code
(tests/conftest.py), every test file's name is unique.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import rspnet

SRC = Path(rspnet.__file__).parent
MAX_FUNCTION_LINES = 60
# the stage registry (`run_stage`, `get_stage`) and the pipeline, which runs the stages through it
STAGE_IMPORTERS = {"rspnet.stages", "rspnet.stages.pipeline"}
# Imports of a stage module by another module, and import cycles, still to be removed (issue 28 item 4:
# SegModule.from_checkpoint). These lists must only shrink: an entry that no longer occurs fails
# too, so whoever removes an edge or a cycle deletes its line here.
ALLOWED_STAGE_IMPORTS: set[tuple[str, str]] = set()
ALLOWED_CYCLES: set[frozenset[str]] = set()  # none left: SegModule.from_checkpoint broke seg_module <-> checkpoint


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ["rspnet", *path.relative_to(SRC).with_suffix("").parts]
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


MODULES = _modules()


def _literal(node: ast.expr) -> str | None:
    """The module name of an import_module call: a literal, or an f-string's literal parts (its prefix)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant)).rstrip(".")
    return None


def _resolve(name: str) -> str | None:
    """The rspnet module that `name` (a module, or module.attribute) names, None outside rspnet."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(name: str, path: Path) -> set[tuple[str, bool]]:
    """{(rspnet module, at module level)} that module `name` imports, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[tuple[str, bool]] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, *([child.module] if child.module else [])])
                names = [f"{base}.{a.name}" for a in child.names]
            elif isinstance(child, ast.Call) and getattr(child.func, "attr", None) == "import_module" and child.args:
                names = [n for n in [_literal(child.args[0])] if n]
            for n in names:
                target = _resolve(n) if n.startswith("rspnet") else None
                if target and target != name:
                    found.add((target, top))
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles(module_level_only: bool) -> set[frozenset[str]]:
    """Strongly connected components (more than one module) of the import graph (Tarjan)."""
    adj = {n: {t for t, top in GRAPH[n] if top or not module_level_only} for n in GRAPH}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    result: set[frozenset[str]] = set()

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in adj[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.add(frozenset(component))

    for v in adj:
        if v not in index:
            connect(v)
    return result


def test_the_scan_sees_imports_inside_functions_and_import_module_calls() -> None:
    assert ("rspnet.stages", False) in GRAPH["rspnet.cli"]  # `from rspnet.stages import run_stage` in main()
    stages = {t for t, _ in GRAPH["rspnet.stages"]}
    assert "rspnet.stages" not in stages and len(MODULES) > 50  # import_module(f"rspnet.stages.{name}")


def test_only_the_registry_and_the_pipeline_import_stages() -> None:
    """A stage is reached through `rspnet.stages.run_stage`; shared code lives outside stages/."""
    edges = set()
    for name, targets in GRAPH.items():
        for target, _ in targets:
            is_stage = target.startswith("rspnet.stages.")
            stage_imports_registry = target == "rspnet.stages" and name.startswith("rspnet.stages.")
            if (is_stage or stage_imports_registry) and name not in STAGE_IMPORTERS:
                edges.add((name, target))
    assert edges - ALLOWED_STAGE_IMPORTS == set(), "import the shared code from outside rspnet/stages"
    assert ALLOWED_STAGE_IMPORTS - edges == set(), "gone: delete these lines from ALLOWED_STAGE_IMPORTS"


def test_the_import_graph_has_no_cycles() -> None:
    """Module-level and function-level imports both count: a function-level import only hides a cycle."""
    found = _cycles(module_level_only=False)
    assert found - ALLOWED_CYCLES == set()
    assert ALLOWED_CYCLES - found == set(), "gone: delete these from ALLOWED_CYCLES"
    assert _cycles(module_level_only=True) <= ALLOWED_CYCLES


def test_no_function_is_longer_than_60_lines() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == [], f"split these into helpers (at most {MAX_FUNCTION_LINES} lines each)"


TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# tests/X/... mirrors src/rspnet/X/..., except tests/bench and tests/experiments, which mirror the repo's scripts.
# The cross-cutting tests (whole CLI, README, makefile, packaging, ...) sit at the top level of tests/ itself:
# no folder is exempt.
SCRIPT_PACKAGES = {"bench", "experiments"}


def _test_folders() -> list[Path]:
    """Folders under tests/ that hold Python files (a folder of data files only, like fixtures/, is not one)."""
    return sorted(
        d
        for d in TESTS.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and not d.name.startswith(".") and any(d.glob("*.py"))
    )


def test_no_two_test_files_share_a_name() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)
    assert not {name for name, n in names.items() if n > 1}, sorted(
        str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py") if names[p.name] > 1
    )


def test_every_test_folder_names_a_package_or_module_of_the_code() -> None:
    """tests/a/b names src/rspnet/a/b (or bench/..., experiments/...): a package, or a module a.b.py."""
    assert _test_folders(), "no test folder found"
    stray = []
    for folder in _test_folders():
        rel = folder.relative_to(TESTS)
        target = (REPO if rel.parts[0] in SCRIPT_PACKAGES else REPO / "src" / "rspnet") / rel
        if not ((target / "__init__.py").is_file() or target.with_suffix(".py").is_file()):
            stray.append(f"tests/{rel.as_posix()} (no {target.relative_to(REPO).as_posix()})")
    assert not stray, f"test folders that mirror nothing: {stray}"


def test_every_test_folder_is_a_package() -> None:
    """tests/ and its folders have an __init__.py: test modules import as tests.X.test_Y (pytest's prepend
    import mode), so tests/bench cannot shadow the `bench` package and conftest.py files cannot collide."""
    missing = [str(d.relative_to(REPO)) for d in [TESTS, *_test_folders()] if not (d / "__init__.py").is_file()]
    assert not missing, missing
