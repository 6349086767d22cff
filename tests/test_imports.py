"""Dependencies run one way: the library (``metarl/``) never imports a recipe (``agents/``), and
no two of its modules import each other, directly or around a longer cycle. Imports inside
functions count: a deferred import is still a dependency."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(file: Path) -> str:
    parts = file.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(file: Path, modules: set[str]) -> set[str]:
    """The modules that ``file`` imports: ``from a import b`` is module ``a.b`` where that is a
    module, else ``a``; relative imports are resolved against the file's package."""
    package = module_name(file) if file.name == "__init__.py" else module_name(file.parent)
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "metarl").rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imported(f, modules) for f in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, ()):
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_library_never_imports_a_recipe():
    offenders = {
        module: sorted(name for name in names if name.split(".")[0] == "agents")
        for module, names in import_graph().items()
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_no_import_cycles_between_library_modules():
    graph = {
        module: {name for name in names if name.startswith("metarl")}
        for module, names in import_graph().items()
    }
    assert cycles(graph) == []


def test_the_cycle_finder_sees_a_cycle_and_its_members():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]


def test_relative_and_from_imports_name_the_module(tmp_path, monkeypatch):
    package = tmp_path / "metarl" / "eval"
    package.mkdir(parents=True)
    (package / "x.py").write_text("from . import y\nfrom ..runs import save\nimport agents.z\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    modules = {"metarl.eval.x", "metarl.eval.y", "metarl.runs", "metarl.eval", "metarl"}
    assert imported(package / "x.py", modules) == {"metarl.eval.y", "metarl.runs", "agents.z"}
