"""The code stays easy to change: no function over 80 lines, no import cycle between tfbrats' modules.

Function length is the ``ast`` span of a function (its ``def`` line to its last line, docstring and
nested functions included), for every function and method in ``tfbrats/`` and ``tools/``.

The import graph has an edge from a module to every ``tfbrats`` module it imports when it is itself
imported, so only statements executed at import time count: those at module level (inside ``if`` and
``try`` too) and in class bodies. Excluded: imports inside functions (lazy: they run on first call,
when every module involved is already loaded), imports under ``if TYPE_CHECKING:`` (never run) and
under ``if __name__ == "__main__":`` (run only when the module runs as a script, e.g. ``python -m``).
``from tfbrats.a import b`` is an edge to ``tfbrats.a.b`` when that is a module, else to ``tfbrats.a``.
The parent packages that Python initialises on the way to a module are not edges: a package's
``__init__`` re-exporting its own submodules is the usual pattern, not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def long_functions(paths: list[Path], limit: int = MAX_LINES, root: Path = ROOT) -> list[str]:
    """``path:line name (n lines)`` for every function longer than `limit` lines, paths under `root`."""
    found = []
    for path in paths:
        for node in _functions(ast.parse(path.read_text(), str(path))):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"``: true only when the module runs as a script, never when it is imported."""
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _import_time_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of `body` that run when the module is imported (see the module docstring)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not (_is_type_checking(node.test) or _is_main_guard(node.test)):
                found += _import_time_imports(node.body)
            found += _import_time_imports(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                found += _import_time_imports(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                found += _import_time_imports(handler.body)
        elif isinstance(node, ast.ClassDef):
            found += _import_time_imports(node.body)
    return found


def import_graph(root: Path = ROOT, package: str = "tfbrats") -> dict[str, set[str]]:
    """Module -> the package's modules it imports at import time."""
    paths = {module_name(path, root): path for path in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _import_time_imports(ast.parse(path.read_text(), str(path)).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            edges |= {target for target in targets if target in paths and target != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_function_is_over_80_lines():
    paths = sorted([*ROOT.glob("tfbrats/**/*.py"), *ROOT.glob("tools/**/*.py")])
    assert paths
    long = long_functions(paths)
    assert not long, "cut these at their natural seams:\n" + "\n".join(long)


def test_the_length_check_counts_docstrings_and_nested_functions(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(77))
    source = f'def f():\n    """Doc."""\n{body}    return 0\n'
    path = tmp_path / "m.py"
    path.write_text(source)
    assert len(source.splitlines()) == 80 and long_functions([path], root=tmp_path) == []
    path.write_text(source.replace("    return 0\n", "    def g():\n        return 0\n    return g\n"))
    assert long_functions([path], root=tmp_path) == ["m.py:1 f (82 lines)"]
    method = "".join(f"    {line}\n" for line in source.replace("f()", "f(self)").splitlines())
    path.write_text(f"class K:\n{method}")
    assert long_functions([path], 79, root=tmp_path) == ["m.py:2 f (80 lines)"]


def test_no_import_cycle_between_tfbrats_modules():
    graph = import_graph()
    assert len(graph) > 50 and graph["tfbrats.data.checks"] >= {"tfbrats.data.nifti", "tfbrats.data.records"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_import_graph_sees_cycles_and_skips_lazy_and_type_checking_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from pkg.a import f\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nfrom . import b\nif TYPE_CHECKING:\n"
                                  "    from pkg.c import C\ndef f():\n    from pkg import c\n")
    (package / "b.py").write_text("try:\n    from pkg.sub import d\nexcept ImportError:\n    d = None\n")
    (package / "c.py").write_text("import pkg.a\nif __name__ == '__main__':\n    from pkg import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "d.py").write_text("class D:\n    from pkg.b import d\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.d"}, "pkg.c": {"pkg.a"},
                     "pkg.sub": set(), "pkg.sub.d": {"pkg.b"}}
    assert find_cycle(graph) == ["pkg.b", "pkg.sub.d", "pkg.b"]
    (package / "sub" / "d.py").write_text("def g():\n    from pkg.b import d\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
