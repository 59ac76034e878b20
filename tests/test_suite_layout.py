"""Test files share helpers through tests/helpers/ and conftest.py, never by importing one
another (a test file imported by another runs its module code twice and couples the two).
Across the whole repository, modules import one another without cycles and take no private
(underscore) name from another module: shared pieces are public, in a module both import."""

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# "from tests.test_x import", "from .test_x import", "import tests.test_x", "from tests import test_x"
TEST_IMPORT = re.compile(r"^[ \t]*(?:from\s+(?:tests\.|\.)test_\w+\s+import|import\s+tests\.test_\w+"
                         r"|from\s+(?:tests|\.)\s+import\s+.*\btest_\w+)", re.MULTILINE)


def test_no_test_file_imports_another_test_file():
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 10
    offenders = {p.name: TEST_IMPORT.findall(p.read_text(encoding="utf-8")) for p in files}
    assert not {name: found for name, found in offenders.items() if found}


def test_the_check_sees_each_form_of_import():
    for line in ("from tests.test_nodes_host import base_graph", "from .test_workflows import ui_files",
                 "import tests.test_formats_host", "from tests import test_core_fidelity",
                 "    from tests.test_motion_files_host import plain_graph"):
        assert TEST_IMPORT.search(line), line
    for line in ("from tests.helpers.graphs import base_graph", "from tests import helpers"):
        assert not TEST_IMPORT.search(line), line


# ---------------------------------------------------------------------------
# the repository's own import graph: no cycles, no private names across modules
# ---------------------------------------------------------------------------

REPO = TESTS.parent
SKIPPED_DIRS = {".venv", ".git", "__pycache__"}
# ComfyUI's nodes.py goes first on sys.path wherever ComfyUI runs, so a plain ``import nodes``
# is ComfyUI's; the pack reaches its own nodes/ only relatively (see the root __init__.py).
COMFYUI_NAMES = {"nodes"}


def _module_names(root: Path) -> dict:
    """Dotted name -> file of every .py file under ``root``; a package (its __init__.py) wins
    over a module file of the same name, as Python's import does."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIPPED_DIRS & set(rel.parts):
            continue
        parts = rel.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in names or path.name == "__init__.py":
            names[name] = path
    return names


def _resolve_absolute(name: str, path: Path, root: Path, names: dict):
    """The repository module an absolute import names, or None (outside the repository).
    A script outside any package also sees the modules of its own folder (its sys.path[0])."""
    if name.split(".")[0] in COMFYUI_NAMES:
        return None
    folder = path.parent.relative_to(root).parts
    prefixes = [()] if (path.parent / "__init__.py").exists() or not folder else [folder, ()]
    for prefix in prefixes:
        parts = [*prefix, *name.split(".")]
        for end in range(len(parts), len(prefix), -1):   # the deepest module of the dotted name
            if ".".join(parts[:end]) in names:
                return ".".join(parts[:end])
    return None


def _imports(path: Path, root: Path, names: dict):
    """(imported module, name taken from it or None, line) for every import in ``path``, at
    any depth (functions and ``if TYPE_CHECKING`` blocks included)."""
    rel = path.relative_to(root).with_suffix("").parts
    package = list(rel[:-1]) if rel[-1] != "__init__" else list(rel[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve_absolute(alias.name, path, root, names)
                if target is not None:
                    yield target, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
                target = target if target in names else None
            else:
                target = _resolve_absolute(node.module, path, root, names)
            if target is None:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}".strip(".")
                yield (sub, None, node.lineno) if sub in names else (target, alias.name, node.lineno)


def import_graph(root: Path) -> tuple[dict, list]:
    """(file -> the repository files it imports, the private-name imports across modules),
    files named by their path under ``root``."""
    names = _module_names(root)
    rel = {name: path.relative_to(root).as_posix() for name, path in names.items()}
    files = sorted({p for p in root.rglob("*.py") if not SKIPPED_DIRS & set(p.relative_to(root).parts)})
    edges, private = {}, []
    for path in files:
        me = path.relative_to(root).as_posix()
        edges[me] = set()
        for target, name, line in _imports(path, root, names):
            if rel[target] == me:
                continue
            edges[me].add(rel[target])
            if name and name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                private.append(f"{me}:{line}: from {rel[target]} import {name}")
    return edges, private


def import_cycles(edges: dict) -> list[list[str]]:
    """One cycle (a, b, ..., a) through each strongly connected group of files."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):   # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while not group or v not in group:
                group.add(stack.pop())
            on_stack.difference_update(group)
            if len(group) > 1:
                groups.append(group)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    cycles = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}
        todo = [start]
        while todo:   # breadth first: the shortest way back to start
            v = todo.pop(0)
            for w in sorted(edges[v] & group):
                if w == start:
                    cycles.append(paths[v] + [start])
                    todo = []
                    break
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    todo.append(w)
    return sorted(cycles)


def test_no_import_cycle_and_no_private_name_imported_from_another_module():
    edges, private = import_graph(REPO)
    assert len(edges) > 100 and "fastvmt_runner/cli.py" in edges["fastvmt_runner/__init__.py"]
    cycles = import_cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
    assert not private, ("private names imported from another module (make them public, or move them "
                         "where both can import them):\n" + "\n".join(private))


def test_the_import_check_sees_cycles_private_names_and_script_folders(tmp_path):
    files = {
        "pkg/__init__.py": "from .a import f\n",
        "pkg/a.py": "def f():\n    from pkg import b  # inside a function: counts\n    return b\n",
        "pkg/b.py": "from .a import _g, __version__\nfrom . import _helpers\n",
        "pkg/_helpers.py": "from ..nodes import thing\n",
        "nodes/__init__.py": "thing = 1\n",
        "scripts/run.py": "import helper\nimport nodes  # ComfyUI's\n",
        "scripts/helper.py": "import pkg.b\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges, private = import_graph(tmp_path)
    assert edges["scripts/run.py"] == {"scripts/helper.py"} and edges["scripts/helper.py"] == {"pkg/b.py"}
    assert edges["pkg/b.py"] == {"pkg/a.py", "pkg/_helpers.py"} and edges["pkg/_helpers.py"] == {"nodes/__init__.py"}
    assert private == ["pkg/b.py:1: from pkg/a.py import _g"]
    assert import_cycles(edges) == [["pkg/a.py", "pkg/b.py", "pkg/a.py"]]
