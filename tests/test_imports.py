"""No import circles in reverie/: every module sits above the modules it imports.

The graph is read with `ast`, not by importing: an edge for every `import` and `from ... import`,
at module level or inside a function, relative or absolute (`from reverie.x import y` is the module
reverie.x.y when y is one, else reverie.x); imports under `if TYPE_CHECKING:` are left out (they
never run). `python -m reverie.MODULE` runs one module, so a circle would also break that.

    nice -n 10 python -m pytest -q tests/test_imports.py
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "reverie"


def module_files(package: Path) -> dict[str, Path]:
    """Every module of `package` (a folder) by its dotted name; a folder's `__init__.py` is the folder."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements under `node`, at any depth, less those only a type checker runs."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking(child):
            for other in child.orelse:  # `else:` of `if TYPE_CHECKING:` does run
                found += _imports_of(other)
        else:
            found += _imports_of(child)
    return found


def _imports_of(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    own = [node] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
    return own + _imports(node)


def import_graph(package: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports} for every module of `package`."""
    modules = module_files(package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        home = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for statement in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(statement, ast.Import):
                targets.update(alias.name for alias in statement.names)
                continue
            base = statement.module or ""
            if statement.level:
                parts = home.split(".")
                parts = parts[: len(parts) - (statement.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in statement.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None when the graph has none (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return path[path.index(target) :] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_reverie_has_no_import_circle():
    graph = import_graph(PACKAGE)
    assert "reverie.deepdream.dreamer" in graph and "reverie.text.models" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_graph_sees_every_kind_of_import_and_finds_a_circle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def later():\n    from .. import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\nelse:\n    from . import d\n"
    )
    (package / "d.py").write_text("import os\nfrom pkg import c as _c\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b"}  # `from pkg.sub import b`: the submodule
    assert graph["pkg.sub.b"] == {"pkg.a"}  # relative, inside a function
    assert graph["pkg.c"] == {"pkg.d"}  # the TYPE_CHECKING import left out, its `else:` kept
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (package / "sub" / "b.py").write_text("def later():\n    import os\n")
    assert find_cycle(import_graph(package)) == ["pkg.c", "pkg.d", "pkg.c"]
    (package / "d.py").write_text("import os\n")
    assert find_cycle(import_graph(package)) is None
