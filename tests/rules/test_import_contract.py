"""The import contract of the package, read from the source (AST, nothing imported):

1. No import cycle among the package's modules (module-level imports, the ones that run
   when a module is imported; ``if TYPE_CHECKING:`` ones do not run). A function-local
   import that would close a cycle is a cycle put off, not removed: it is reported too.
2. Pure modules (``PURE``: the protocol, the rules and data they work on, and the I/O-free
   rooms of ``waiting/``) import neither asyncio nor aiohttp, directly or through any
   module of the package they import. Third-party libraries' own imports are not followed
   (tenacity, which the poll policy uses, loads asyncio itself).
3. Typing-only imports point down too, but the few back edges listed and explained in
   ``TYPING_BACK_EDGES`` (a class split across modules naming it in annotations).
4. ``waiting/`` imports neither the client nor downloads, not even for typing, nor through
   another module of the package that does; the only function-local exceptions are the
   deprecated re-exports in ``DELIBERATE_LAZY_EDGES``.
5. Optional dependencies (``OPTIONAL``) are never imported at module level: the library
   imports and runs without them; the code that needs one imports it where it is used.
6. The library never imports the command line (``cli``, ``console/``); only
   ``__main__`` and the demo stand above it.

The checker is tested too, on a small package with each rule broken
(``test_the_checker_finds_each_kind_of_violation``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "qianfan_export_wait"

PURE = (
    "qianfan_export_wait._checks",
    "qianfan_export_wait._lazy",
    "qianfan_export_wait.auth",
    "qianfan_export_wait.errors",
    "qianfan_export_wait.models",
    "qianfan_export_wait.protocol",  # and every module in it
    "qianfan_export_wait.downloads.rules",
    "qianfan_export_wait.downloads.bos",
    "qianfan_export_wait.fleet.model",
    "qianfan_export_wait.fleet.urls",
    "qianfan_export_wait.waiting.core",
    "qianfan_export_wait.waiting.duequeue",
    "qianfan_export_wait.waiting.entries",
    "qianfan_export_wait.waiting.health",
    "qianfan_export_wait.waiting.looks",
    "qianfan_export_wait.waiting.outcomes",
    "qianfan_export_wait.waiting.packing",
    "qianfan_export_wait.waiting.policy",
)
"""Modules that must not need an event loop or an HTTP library. Not in it, by design:
``waiting.clock`` (the clocks sleep on the loop), ``waiting.driver``, ``waiting.handles``,
``waiting.waiter`` and ``waiting.run`` (they own tasks), and every module that does I/O."""

IO_LIBRARIES = ("asyncio", "aiohttp")
OPTIONAL = ("redis", "prometheus_client", "opentelemetry", "tqdm", "uvloop")
WAITING_MUST_NOT_IMPORT = (
    "qianfan_export_wait.client",
    "qianfan_export_wait.download",  # the old module: it re-exports downloads/
    "qianfan_export_wait.downloads",
)

FORMER_CLIENT_DOWNLOADS_EDGE = ("qianfan_export_wait.downloads.fetch", "qianfan_export_wait.client")
"""``Downloader.__init__`` used to import ``client.validate_base_url`` in its body while
``client.py`` imported the downloads: both now take it from ``endpoints``."""

DELIBERATE_LAZY_EDGES = frozenset(
    {
        ("qianfan_export_wait.errors", "qianfan_export_wait.protocol"),
        ("qianfan_export_wait.errors", "qianfan_export_wait.protocol.classify"),
        ("qianfan_export_wait.waiting", "qianfan_export_wait.oneshot"),
        ("qianfan_export_wait.waiting.run", "qianfan_export_wait.oneshot"),
    }
)
"""Deprecated re-exports, each in its module's PEP 562 ``__getattr__`` that warns
``DeprecationWarning`` (checked below): ``errors`` finds the classification names that
moved to ``protocol.classify`` (which imports the hierarchy from ``errors``), and
``waiting`` finds ``wait_for_exports``, which moved to ``oneshot`` above the client and
``waiting/`` because it makes a client. Each runs only when a user asks for an old name,
after both modules are loaded; the package's own code imports the new homes. They go
with the deprecation."""


@dataclass(frozen=True, slots=True)
class Import:
    """``source`` imports ``target`` (a module name, absolute) on ``line``."""

    source: str
    target: str
    line: int
    where: str  # "module", "typing" (under TYPE_CHECKING) or "function"


@dataclass
class Graph:
    """Every import of every module of a package."""

    modules: set[str] = field(default_factory=set)
    imports: list[Import] = field(default_factory=list)

    def edges(self, where: str = "module") -> dict[str, set[str]]:
        """Module -> the package's modules it imports that way (their packages too)."""
        out: dict[str, set[str]] = {module: set() for module in self.modules}
        for item in self.imports:
            if item.where == where:
                out[item.source].update(self.package_modules(item.source, item.target))
        return out

    def package_modules(self, source: str, target: str) -> set[str]:
        """The package's modules importing ``target`` from ``source`` runs: it and each
        package above it that ``source`` is not already inside."""
        found: set[str] = set()
        parts = target.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[:n])
            if name in self.modules and not (source + ".").startswith(name + "."):
                found.add(name)
        return found


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(nodes: Iterable[ast.stmt], where: str) -> Iterator[tuple[ast.stmt, str]]:
    """Each statement with where it runs: at import ("module"), never ("typing"), or
    when a function is called ("function")."""
    for node in nodes:
        yield node, where
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _walk(node.body, "function")
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, "typing" if where == "module" else where)
            yield from _walk(node.orelse, where)
        else:  # class bodies, if/try/with/for/match blocks run where they stand
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from _walk([child], where)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    yield from _walk(child.body, where)


def read_graph(root: Path, package: str) -> Graph:
    """The import graph of ``root/package``."""
    graph = Graph()
    paths = sorted((root / package).rglob("*.py"))
    graph.modules = {module_name(path, root) for path in paths}
    for path in paths:
        source = module_name(path, root)
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text("utf-8"))
        for node, where in _walk(tree.body, "module"):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    graph.imports.append(Import(source, alias.name, node.lineno, where))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = source.split(".")
                    keep = len(anchor) - node.level + (1 if is_package else 0)
                    base = ".".join([*anchor[:keep], *([base] if base else [])])
                graph.imports.append(Import(source, base, node.lineno, where))
                for alias in node.names:
                    if f"{base}.{alias.name}" in graph.modules:
                        graph.imports.append(
                            Import(source, f"{base}.{alias.name}", node.lineno, where)
                        )
    return graph


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(edges.get(node, ()))
    return False


def hidden_cycles(graph: Graph) -> list[Import]:
    """Function-local imports of the package's modules that close a module-level cycle."""
    edges = graph.edges("module")
    return [
        item
        for item in graph.imports
        if item.where == "function"
        and any(
            reaches(edges, target, item.source)
            for target in graph.package_modules(item.source, item.target)
        )
    ]


def is_pure_name(module: str, pure: Iterable[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in pure)


def impurities(graph: Graph, pure: Iterable[str], forbidden: Iterable[str]) -> list[str]:
    """For each pure module, the forbidden top-level imports its import closure makes."""
    edges = graph.edges("module")
    bad = tuple(forbidden)
    direct: dict[str, list[Import]] = {}
    for item in graph.imports:
        if item.where == "module" and item.target.split(".")[0] in bad:
            direct.setdefault(item.source, []).append(item)
    found = []
    for module in sorted(m for m in graph.modules if is_pure_name(m, pure)):
        seen, todo = set(), [module]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            found.extend(
                f"{module} -> {item.source}:{item.line} imports {item.target}"
                for item in direct.get(node, ())
            )
            todo.extend(edges.get(node, ()))
    return found


def upward(graph: Graph, inside: str, targets: Iterable[str], where: str) -> list[Import]:
    """Imports from modules in ``inside`` of any of ``targets`` (or their modules)."""
    names = tuple(targets)
    return [
        item
        for item in graph.imports
        if item.where == where
        and (item.source == inside or item.source.startswith(inside + "."))
        and any(item.target == name or item.target.startswith(name + ".") for name in names)
    ]


def optional_at_module_level(graph: Graph, optional: Iterable[str]) -> list[Import]:
    names = tuple(optional)
    return [
        item
        for item in graph.imports
        if item.where == "module" and item.target.split(".")[0] in names
    ]


def show(items: Iterable[Import]) -> str:
    return "\n".join(f"{i.source}:{i.line} imports {i.target} ({i.where})" for i in items)


GRAPH = read_graph(ROOT, PACKAGE)


# -- the package ---------------------------------------------------------------------------


def test_the_graph_is_read() -> None:
    assert len(GRAPH.modules) > 60
    assert "qianfan_export_wait.waiting.waiter" in GRAPH.modules
    assert GRAPH.edges()["qianfan_export_wait.waiting.core"]


def test_no_import_cycle_among_module_level_imports() -> None:
    assert find_cycles(GRAPH.edges("module")) == []


TYPING_BACK_EDGES = {
    ("qianfan_export_wait.errors", "qianfan_export_wait.protocol.classify"): (
        "the deprecated names errors still finds, typed for mypy (DELIBERATE_LAZY_EDGES)"
    ),
    ("qianfan_export_wait.waiting.answers", "qianfan_export_wait.waiting.core"): (
        "the core's answer room: Scheduler.answer's cases, each taking the Scheduler"
    ),
    ("qianfan_export_wait.observe", "qianfan_export_wait.waiting.waiter"): (
        "Observer.bind(waiter) hands each observer the waiter it watches"
    ),
    ("qianfan_export_wait.client_transport", "qianfan_export_wait.client"): (
        "the transport's error mapping reads the client it maps for"
    ),
}
"""Imports for typing only (``if TYPE_CHECKING:``) that point back up the graph: each is
a class whose code is split across modules naming it in annotations, never an import
that runs. Any other typing import must point down like the module-level ones."""


def typed_edges(graph: Graph) -> dict[str, set[str]]:
    """The module-level edges plus each typing import of a module of the package (the
    module named only: a typing import runs no package ``__init__``)."""
    edges = graph.edges("module")
    for item in graph.imports:
        if item.where == "typing" and item.target in graph.modules:
            edges[item.source].add(item.target)
    return edges


def test_typing_imports_point_down_but_the_listed_back_edges() -> None:
    edges = typed_edges(GRAPH)
    present = {(s, t) for s, targets in edges.items() for t in targets}
    assert set(TYPING_BACK_EDGES) <= present, "a back edge went: drop it from the list"
    for source, target in TYPING_BACK_EDGES:
        edges[source].discard(target)
    assert find_cycles(edges) == []


OLD_NAMES = ("_fleet", "bos", "download", "download_rules", "extract", "redis_limit", "waiter")
"""Modules that only re-export names from their new homes, kept for users' imports."""

FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "plain data and rules",
        ("_checks", "_json", "_lazy", "_text", "auth", "errors", "models", "ratelimit"),
    ),
    ("the protocol", ("endpoints", "protocol", "unknown_states")),
    ("waiting", ("integrations", "metrics", "observe", "tracing", "waiting")),
    ("beside the waiter", ("downloads", "fleet", "jsonl")),
    ("the client", ("client", "client_signing", "client_stats", "client_transport")),
    ("jobs and tools", ("durable", "job", "oneshot", "simulator", "sync")),
    ("testing", ("pytest_plugin", "testing")),
    ("old names", OLD_NAMES),
    ("the command line", ("__main__", "cli", "console", "demo")),
)
"""The package's floors, bottom up (docs/development.md draws the same): a module imports
only its own floor and the floors below it. ``qianfan_export_wait`` itself (lazy names
only) stands above them all. The old module names are kept for users; nothing of the
package imports them."""


def floor_of(module: str) -> int:
    """The index in ``FLOORS`` of the floor ``module`` stands on."""
    name = module.removeprefix(PACKAGE + ".")
    if module == PACKAGE:
        return len(FLOORS)
    found = [
        i
        for i, (_, names) in enumerate(FLOORS)
        for top in names
        if name == top or name.startswith(top + ".")
    ]
    assert len(found) == 1, f"{module} is on {len(found)} floors"
    return found[0]


def test_every_module_imports_its_own_floor_or_below() -> None:
    edges = typed_edges(GRAPH)
    for source, target in TYPING_BACK_EDGES:
        edges[source].discard(target)
    upward_arrows = [
        f"{source} ({FLOORS[floor_of(source)][0]}) imports {target} ({FLOORS[floor_of(target)][0]})"
        for source, targets in sorted(edges.items())
        for target in sorted(targets)
        if floor_of(target) > floor_of(source)
    ]
    assert upward_arrows == [], "\n".join(upward_arrows)


def test_nothing_of_the_package_imports_an_old_name() -> None:
    old = tuple(f"{PACKAGE}.{name}" for name in OLD_NAMES)
    found = [
        item
        for item in GRAPH.imports
        if not is_pure_name(item.source, old)
        and any(is_pure_name(m, old) for m in GRAPH.package_modules(item.source, item.target))
    ]
    assert found == [], show(found)


def test_no_function_local_import_hides_a_cycle_but_the_deliberate_ones() -> None:
    hidden = [
        item
        for item in hidden_cycles(GRAPH)
        if (item.source, item.target) not in DELIBERATE_LAZY_EDGES
    ]
    assert hidden == [], show(hidden)


def _getattr_lines(module: str) -> tuple[range, bool]:
    """The lines of ``module``'s module-level ``__getattr__``, and whether it warns
    ``DeprecationWarning``."""
    parts = module.split(".")
    path = ROOT.joinpath(*parts).with_suffix(".py")
    if not path.exists():
        path = ROOT.joinpath(*parts, "__init__.py")
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            warns = any(
                isinstance(n, ast.Name) and n.id == "DeprecationWarning" for n in ast.walk(node)
            )
            return range(node.lineno, (node.end_lineno or node.lineno) + 1), warns
    return range(0), False


def test_the_deliberate_lazy_edges_are_deprecated_getattr_re_exports_only() -> None:
    found = [item for item in GRAPH.imports if (item.source, item.target) in DELIBERATE_LAZY_EDGES]
    assert {(i.source, i.target) for i in found if i.where == "function"} == DELIBERATE_LAZY_EDGES
    assert {i.where for i in found} <= {"function", "typing"}
    for item in found:
        if item.where == "function":
            lines, warns = _getattr_lines(item.source)
            assert item.line in lines and warns, show([item])
    for source in {source for source, _ in DELIBERATE_LAZY_EDGES}:
        above = [
            item
            for item in GRAPH.imports
            if item.source == source
            and item.where == "module"
            and item.target in {target for _, target in DELIBERATE_LAZY_EDGES}
        ]
        assert above == [], show(above)
    package_imports = [
        item
        for item in GRAPH.imports
        if item.source == "qianfan_export_wait.errors"
        and item.where == "module"
        and item.target.startswith(PACKAGE)
    ]
    assert package_imports == [], show(package_imports)


def test_the_client_and_the_downloads_do_not_import_each_other() -> None:
    edges = {(i.source, i.target) for i in GRAPH.imports}
    assert FORMER_CLIENT_DOWNLOADS_EDGE not in edges
    assert ("qianfan_export_wait.client", "qianfan_export_wait.downloads.fetch") not in edges


def test_function_local_imports_of_the_package_are_reported() -> None:
    local = [
        item
        for item in GRAPH.imports
        if item.where == "function" and item.target.startswith(PACKAGE)
    ]
    print("function-local imports of the package's modules:\n" + show(local))
    assert all(item.source in GRAPH.modules for item in local)


def test_pure_modules_import_neither_asyncio_nor_aiohttp() -> None:
    assert all(any(m == p or m.startswith(p + ".") for m in GRAPH.modules) for p in PURE)
    assert impurities(GRAPH, PURE, IO_LIBRARIES) == []


def test_waiting_imports_neither_the_client_nor_downloads() -> None:
    found = upward(GRAPH, "qianfan_export_wait.waiting", WAITING_MUST_NOT_IMPORT, "module")
    assert found == [], show(found)


def test_waiting_does_not_even_name_downloads_for_typing() -> None:
    found = upward(GRAPH, "qianfan_export_wait.waiting", WAITING_MUST_NOT_IMPORT, "typing")
    assert found == [], show(found)


def arrows_through(graph: Graph, inside: str, targets: Iterable[str]) -> list[Import]:
    """Imports from modules in ``inside`` (at module level or for typing) of a module that
    is one of ``targets`` or reaches one through the module-level imports, and every
    function-local import there of such a module."""
    edges = graph.edges("module")
    names = tuple(targets)

    def above(module: str) -> bool:
        return any(module == n or module.startswith(n + ".") for n in names) or any(
            reaches(edges, module, n) for n in names if n in graph.modules
        )

    return [
        item
        for item in graph.imports
        if (item.source == inside or item.source.startswith(inside + "."))
        and any(above(m) for m in graph.package_modules(item.source, item.target))
    ]


def test_waiting_reaches_neither_the_client_nor_downloads_through_another_module() -> None:
    found = [
        item
        for item in arrows_through(GRAPH, "qianfan_export_wait.waiting", WAITING_MUST_NOT_IMPORT)
        if (item.source, item.target) not in DELIBERATE_LAZY_EDGES
    ]
    assert found == [], show(found)


COMMAND_LINE = ("qianfan_export_wait.cli", "qianfan_export_wait.console")
ABOVE_THE_COMMAND_LINE = ("qianfan_export_wait.__main__", "qianfan_export_wait.demo")


def test_the_library_never_imports_the_command_line() -> None:
    found = [
        item
        for item in GRAPH.imports
        if not is_pure_name(item.source, COMMAND_LINE + ABOVE_THE_COMMAND_LINE)
        and any(
            is_pure_name(m, COMMAND_LINE) for m in GRAPH.package_modules(item.source, item.target)
        )
    ]
    assert found == [], show(found)


def test_optional_dependencies_are_never_imported_at_module_level() -> None:
    found = optional_at_module_level(GRAPH, OPTIONAL)
    assert found == [], show(found)


# -- the checker itself --------------------------------------------------------------------


PLANTED = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from . import b\n",
    "pkg/b.py": "from .c import thing\n",
    "pkg/c.py": "from .a import x\nthing = 1\n",
    "pkg/pure.py": "from .helper import y\n",
    "pkg/helper.py": "import asyncio\ny = 1\n",
    "pkg/wait/__init__.py": "",
    "pkg/wait/core.py": (
        "from typing import TYPE_CHECKING\n"
        "from ..client import Client\n"
        "if TYPE_CHECKING:\n    from ..dl import D\n"
    ),
    "pkg/client.py": "import redis\nfrom . import dl\n",
    "pkg/dl.py": "def make():\n    from .client import Client\n    import tqdm\n",
    "pkg/fine.py": "def f():\n    import redis\n",
    "pkg/wait/via.py": (
        "from ..fine import f\nfrom ..mid import g\ndef h():\n    from .. import top\n"
    ),
    "pkg/mid.py": "from .client import Client\ng = 1\n",
    "pkg/top.py": "from .mid import g\n",
}


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    for name, text in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, "utf-8")
    graph = read_graph(tmp_path, "pkg")
    assert find_cycles(graph.edges("module")) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert [(i.source, i.target) for i in hidden_cycles(graph)] == [("pkg.dl", "pkg.client")]
    assert impurities(graph, ["pkg.pure"], IO_LIBRARIES) == [
        "pkg.pure -> pkg.helper:1 imports asyncio"
    ]
    module_level = upward(graph, "pkg.wait", ["pkg.client", "pkg.dl"], "module")
    assert [(i.source, i.target) for i in module_level] == [("pkg.wait.core", "pkg.client")]
    typing_only = upward(graph, "pkg.wait", ["pkg.client", "pkg.dl"], "typing")
    assert [(i.source, i.target) for i in typing_only] == [("pkg.wait.core", "pkg.dl")]
    through = arrows_through(graph, "pkg.wait", ["pkg.client", "pkg.dl"])
    assert sorted((i.source, i.target, i.where) for i in through) == [
        ("pkg.wait.core", "pkg.client", "module"),
        ("pkg.wait.core", "pkg.dl", "typing"),
        ("pkg.wait.via", "pkg.mid", "module"),
        ("pkg.wait.via", "pkg.top", "function"),
    ]
    optional = optional_at_module_level(graph, OPTIONAL)
    assert [(i.source, i.target) for i in optional] == [("pkg.client", "redis")]
