"""The package layout keeps its promises: no import cycles, processors never imports receiver.

The graph is built from the source with `ast`, so it sees every import a module can make at run time:
module-level ones, the lazy ones inside functions, and `importlib.import_module("literal")`. Imports under
`if TYPE_CHECKING:` are left out (they never run). An edge `a -> b` also stands for the packages that
importing `b` loads first (`processors.x.y` runs `processors/__init__` and `processors/x/__init__`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("receiver", "processors")


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those only reachable through an `if TYPE_CHECKING:` body."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_names(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                # `from . import x` in a package's __init__ is relative to the package itself.
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
            # `from package import submodule` imports the submodule too.
            names.update(
                f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known
            )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _with_parents(name: str, known: dict[str, Path]) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known.keys()


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules that importing it (or calling its functions) may import."""
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        edges: set[str] = set()
        for name in _imported_names(module, path, known):
            edges |= _with_parents(name, known)
        edges.discard(module)
        # A package's own __init__ always runs before its submodules: that is not an edge of the submodule.
        graph[module] = {edge for edge in edges if not module.startswith(edge + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_graph_sees_lazy_imports() -> None:
    # The registry loads processors lazily; the graph still has to see those edges or it proves nothing.
    graph = import_graph()
    assert "processors.vendors.cvat.processor" in graph["processors.vendors"]
    assert "receiver.app" in graph["receiver.cli.serve"]


def test_no_import_cycles() -> None:
    assert find_cycles(import_graph()) == []


def test_find_cycles_reports_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_processors_never_import_receiver() -> None:
    offenders = {
        module: sorted(edge for edge in edges if edge.split(".")[0] == "receiver")
        for module, edges in import_graph().items()
        if module.split(".")[0] == "processors"
    }
    assert {module: edges for module, edges in offenders.items() if edges} == {}


def test_no_mask_module_at_processors_top_level() -> None:
    mask_modules = {"masks", "labelmap", "rle", "png", "segmentation", "raster", "tracks", "cvat_shapes"}
    top_level = {path.stem for path in (ROOT / "processors").glob("*.py")}
    assert top_level & mask_modules == set()
    assert (ROOT / "processors" / "masks" / "__init__.py").is_file()


def test_each_vendor_processor_lives_in_its_vendor_package() -> None:
    from processors.vendors import VENDORS
    from processors.vendors.base import Processor

    for name, info in VENDORS.items():
        cls = info.processor_class()
        assert issubclass(cls, Processor)
        assert cls.__module__ == f"processors.vendors.{name}.processor"
        assert (ROOT / "processors" / "vendors" / name / "__init__.py").is_file()


def test_version_comes_from_package_metadata() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "receiver", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"labelhook {version('labelhook')}"


def test_readme_stays_a_users_page() -> None:
    """Issue 17: the README holds what a user needs (≤ 20 KB); history and deep dives live in docs/."""
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 20_000, f"README.md is {size} bytes: move detail into docs/"
    for target in ("docs/performance.md", "docs/reliability.md", "docs/vendors/README.md"):
        assert (ROOT / target).is_file(), target
