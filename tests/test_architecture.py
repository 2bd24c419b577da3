"""The import graph of `legion/` is the architecture; this test keeps it that way.

Every module under `legion/` is parsed with `ast` (never imported, so the test
sees lazy imports, `if TYPE_CHECKING:` imports and literal
`importlib.import_module("legion...")` calls that an import-time check would
miss) and two properties of the graph are checked:

* No import cycles. A cycle makes import order matter, forces lazy imports
  to paper over it and welds modules so that none can be understood, tested
  or replaced alone. Type-only and lazy imports count: they hide a cycle,
  they do not remove it.
* Imports follow the layers in LAYERS, bottom to top: a module may import its
  own layer or a lower one, never a higher one. The CLI is held tighter: it
  talks to the daemon over the socket, so it may import only the contract
  (plus the lazy exceptions in ALLOWED), and the public plugin API
  (`legion.plugin`, `legion.tool`) must not import daemon internals.

LAYERS is the single source of the layer table; docs/architecture.md quotes
it in a fenced block and `test_layer_table_matches_the_docs` keeps the two
equal.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "legion"
DOCS = REPO / "docs" / "architecture.md"

# -- the layer table ----------------------------------------------------------------------

# Bottom to top. A module belongs to the layer of its longest matching entry.
# An entry matches on dot boundaries: "legion.daemon.tools.sandbox" matches that
# module and "legion.daemon.tools.sandbox.x", never "legion.daemon.tools.sandbox_kernel"
# (so those are listed explicitly). An entry ending in " (exact)" matches only
# that module (for a package: its __init__), not the modules below it.
EXACT = " (exact)"
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "contract",
        (
            "legion (exact)",
            "legion.errors",
            "legion.protocol",
            "legion.config",
            "legion.paths",
            "legion.validation",
            "legion.redact",
            "legion.tool",
            "legion.plugin",
        ),
    ),
    (
        "infrastructure",
        (
            "legion.daemon (exact)",
            "legion.daemon.store",
            "legion.daemon.events",
            "legion.daemon.llm",
            "legion.daemon.rpc",
            "legion.daemon.log",
            "legion.daemon.lock",
            "legion.daemon.systemd",
            "legion.daemon.plugins",
            "legion.daemon.tools.sandbox",
            "legion.daemon.tools.sandbox_kernel",
            "legion.daemon.tools.sandbox_policy",
            "legion.daemon.tools.sandbox_runner",
            "legion.daemon.memory.embedders",
        ),
    ),
    (
        "domain",
        (
            "legion.daemon.agents",
            "legion.daemon.memory",
            "legion.daemon.tasks",
            "legion.daemon.schedule",
            "legion.daemon.watchers",
            "legion.daemon.tools",
        ),
    ),
    (
        "adapters",
        (
            "legion.daemon.methods",
            "legion.daemon.tools.kernel",
            "legion.daemon.tools.meta",
            "legion.daemon.tools.starter",
            "legion.daemon.tools.context",
            "legion.daemon.agents.fleet_tools",
            "legion.daemon.agents.reflection_tools",
            "legion.daemon.memory.tools",
            "legion.daemon.schedule.tools",
            "legion.daemon.tasks.tools",
        ),
    ),
    # "root" sits below "cli" only for ordering; the CLI rule below is what
    # restricts the CLI.
    (
        "root",
        (
            "legion.daemon.root",
            "legion.daemon.app",
        ),
    ),
    (
        "cli",
        (
            "legion.cli",
            # `python -m legion` is the CLI.
            "legion.__main__",
        ),
    ),
)

CLI = "legion.cli"
CLI_MAY_IMPORT_LAYERS = frozenset({"contract"})
# (importer prefix, imported module) pairs the CLI may import although the CLI
# rule forbids them, and only lazily (inside a function body), so that no
# other command pays for them.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        # `legion daemon` starts the daemon in-process, after argument parsing.
        ("legion.cli", "legion.daemon.app"),
    }
)

PLUGIN_API = ("legion.plugin", "legion.tool")
DAEMON = "legion.daemon"

DOCS_HEADER = "# layers (bottom to top)"


# -- parsing the package ------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleFile:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int
    lazy: bool
    type_only: bool

    def where(self) -> str:
        kinds = [kind for kind, on in (("lazy", self.lazy), ("type-only", self.type_only)) if on]
        suffix = f" ({', '.join(kinds)})" if kinds else ""
        return f"{self.path.as_posix()}:{self.line}{suffix}"


def module_name(relative: Path) -> str:
    """`legion/daemon/agents/fleet.py` -> `legion.daemon.agents.fleet`; `__init__` -> package."""
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover_modules(root: Path, package: str = PACKAGE) -> dict[str, ModuleFile]:
    modules: dict[str, ModuleFile] = {}
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts:
            continue
        name = module_name(relative)
        modules[name] = ModuleFile(name, relative, path.name == "__init__.py")
    return modules


def is_in(module: str, prefix: str) -> bool:
    """Whether `module` is `prefix` or below it, on dot boundaries."""
    return module == prefix or module.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _literal_import_module(node: ast.Call) -> str | None:
    """The module of `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in {"import_module", "__import__"} or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return None


class ImportCollector(ast.NodeVisitor):
    """Every import in one module, wherever it is, resolved to a module name."""

    def __init__(self, module: ModuleFile, known: Set[str], package: str) -> None:
        self.module = module
        self.known = known
        self.package = package
        self.imports: list[Import] = []
        self._function_depth = 0
        self._type_checking_depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._in_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._in_function(node)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self._type_checking_depth += 1
        for statement in node.body:
            self.visit(statement)
        self._type_checking_depth -= 1
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._from_base(node)
        if base is None:
            return
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            self._add(candidate if candidate in self.known else base, node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _literal_import_module(node)
        if name is not None:
            self._add(name, node)
        self.generic_visit(node)

    def _in_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    def _from_base(self, node: ast.ImportFrom) -> str | None:
        """The module `from X import ...` names, relative imports resolved."""
        if node.level == 0:
            return node.module
        this = self.module
        package = this.name if this.is_package else this.name.rpartition(".")[0]
        parts = package.split(".")
        drop = node.level - 1
        if drop >= len(parts):
            return None
        base = parts[: len(parts) - drop]
        if node.module:
            base.extend(node.module.split("."))
        return ".".join(base)

    def _add(self, imported: str, node: ast.stmt | ast.expr) -> None:
        if not is_in(imported, self.package) or imported == self.module.name:
            return
        record = Import(
            importer=self.module.name,
            imported=imported,
            path=self.module.path,
            line=node.lineno,
            lazy=self._function_depth > 0,
            type_only=self._type_checking_depth > 0,
        )
        if record not in self.imports:  # `from m import a, b` is one import of m
            self.imports.append(record)


def collect_imports(root: Path, package: str = PACKAGE) -> list[Import]:
    modules = discover_modules(root, package)
    known = frozenset(modules)
    imports: list[Import] = []
    for module in modules.values():
        tree = ast.parse((root / module.path).read_text(encoding="utf-8"), str(module.path))
        collector = ImportCollector(module, known, package)
        collector.visit(tree)
        imports.extend(collector.imports)
    return imports


def build_graph(modules: Iterable[str], imports: Iterable[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        graph.setdefault(imp.importer, set()).add(imp.imported)
        graph.setdefault(imp.imported, set())
    return graph


def sites_by_edge(imports: Iterable[Import]) -> dict[tuple[str, str], list[Import]]:
    sites: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        sites.setdefault((imp.importer, imp.imported), []).append(imp)
    return sites


# -- cycles -------------------------------------------------------------------------------


def strongly_connected_components(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); each component sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    work: list[tuple[str, Iterator[str]]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        work.append((node, iter(sorted(graph.get(node, ())))))

    def leave(node: str) -> None:
        if low[node] != index[node]:
            return
        component: list[str] = []
        while not component or component[-1] != node:
            component.append(stack.pop())
            on_stack.discard(component[-1])
        components.append(sorted(component))

    for root in sorted(graph):
        if root in index:
            continue
        enter(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    enter(child)
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                leave(node)
    return components


def shortest_cycle_from(graph: Mapping[str, Set[str]], start: str, within: Set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside `within` (breadth first), or []."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [*reversed(path), start]
            if child in within and child not in parents:
                parents[child] = node
                queue.append(child)
    return []


def shortest_cycle(graph: Mapping[str, Set[str]], component: Iterable[str]) -> list[str]:
    members = set(component)
    cycles = (shortest_cycle_from(graph, start, members) for start in sorted(members))
    return min((cycle for cycle in cycles if cycle), key=len, default=[])


def find_cycles(graph: Mapping[str, Set[str]]) -> list[tuple[list[str], list[str]]]:
    """(a shortest cycle, its whole component) for every component with a cycle."""
    found: list[tuple[list[str], list[str]]] = []
    for component in strongly_connected_components(graph):
        cycle = shortest_cycle(graph, component)
        if cycle:
            found.append((cycle, component))
    return found


def describe_cycle(
    cycle: list[str], component: list[str], sites: Mapping[tuple[str, str], list[Import]]
) -> str:
    lines = ["  " + " -> ".join(cycle)]
    for importer, imported in itertools.pairwise(cycle):
        where = ", ".join(imp.where() for imp in sites.get((importer, imported), []))
        lines.append(f"      {importer} -> {imported}: {where}")
    if len(component) > len(cycle) - 1:
        lines.append(
            f"      its strongly connected component has {len(component)} modules, "
            "joined by these imports (break enough of them):"
        )
        members = set(component)
        lines += [
            f"        {importer} -> {imported}: {', '.join(s.where() for s in found)}"
            for (importer, imported), found in sorted(sites.items())
            if importer in members and imported in members
        ]
    return "\n".join(lines)


# -- layers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerEntry:
    prefix: str
    exact: bool
    layer: str
    rank: int

    def matches(self, module: str) -> bool:
        return module == self.prefix if self.exact else is_in(module, self.prefix)


def parse_entry(text: str) -> tuple[str, bool]:
    """`"legion (exact)"` -> ("legion", True); `"legion.cli"` -> ("legion.cli", False)."""
    if text.endswith(EXACT):
        return text.removesuffix(EXACT), True
    return text, False


def layer_entries(
    layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS,
) -> list[LayerEntry]:
    entries: list[LayerEntry] = []
    for rank, (layer, prefixes) in enumerate(layers):
        for text in prefixes:
            prefix, exact = parse_entry(text)
            entries.append(LayerEntry(prefix, exact, layer, rank))
    return entries


def layer_of(module: str, entries: Iterable[LayerEntry]) -> LayerEntry | None:
    """The entry with the longest prefix that matches `module`, if any."""
    matching = [entry for entry in entries if entry.matches(module)]
    return max(matching, key=lambda entry: len(entry.prefix), default=None)


def upward_imports(imports: Iterable[Import], entries: list[LayerEntry]) -> list[Import]:
    """Imports of a higher layer than the importer's own."""
    upward: list[Import] = []
    for imp in imports:
        importer, imported = layer_of(imp.importer, entries), layer_of(imp.imported, entries)
        if importer and imported and imported.rank > importer.rank:
            upward.append(imp)
    return upward


def cli_may_import(imp: Import, entries: list[LayerEntry]) -> bool:
    if is_in(imp.imported, CLI):
        return True
    imported = layer_of(imp.imported, entries)
    if imported is not None and imported.layer in CLI_MAY_IMPORT_LAYERS:
        return True
    allowed = any(
        is_in(imp.importer, prefix) and imp.imported == target for prefix, target in ALLOWED
    )
    return allowed and imp.lazy


def cli_violations(imports: Iterable[Import], entries: list[LayerEntry]) -> list[Import]:
    return [imp for imp in imports if is_in(imp.importer, CLI) and not cli_may_import(imp, entries)]


def plugin_api_violations(imports: Iterable[Import]) -> list[Import]:
    return [
        imp
        for imp in imports
        if any(is_in(imp.importer, api) for api in PLUGIN_API) and is_in(imp.imported, DAEMON)
    ]


def describe_edge(imp: Import, entries: list[LayerEntry]) -> str:
    def named(module: str) -> str:
        entry = layer_of(module, entries)
        return f"{module} ({entry.layer if entry else 'no layer'})"

    return f"  {named(imp.importer)} -> {named(imp.imported)}    [{imp.where()}]"


def unassigned_modules(modules: Iterable[str], entries: list[LayerEntry]) -> list[str]:
    return sorted(module for module in modules if layer_of(module, entries) is None)


# -- the docs block -----------------------------------------------------------------------


def render_docs_block(layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> str:
    lines = ["```", DOCS_HEADER]
    lines += [f"{name}: {', '.join(prefixes)}" for name, prefixes in layers]
    lines.append("```")
    return "\n".join(lines)


def find_docs_block(markdown: str) -> list[str] | None:
    """The lines of the fenced block whose first line is DOCS_HEADER, without the fences."""
    pattern = re.compile(r"^```[^\n]*\n" + re.escape(DOCS_HEADER) + r"\n(.*?)^```", re.M | re.S)
    match = pattern.search(markdown)
    return None if match is None else match.group(1).splitlines()


def parse_docs_block(lines: Iterable[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`name: prefix, prefix, ...` per line; blank lines and `#` comments skipped."""
    layers: list[tuple[str, tuple[str, ...]]] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, rest = text.partition(":")
        assert sep, f"docs/architecture.md layer line has no 'name:': {line!r}"
        prefixes = tuple(part.strip() for part in rest.split(",") if part.strip())
        layers.append((name.strip(), prefixes))
    return tuple(layers)


# -- the tests on legion/ -----------------------------------------------------------------


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return collect_imports(REPO)


@pytest.fixture(scope="module")
def modules() -> list[str]:
    return sorted(discover_modules(REPO))


def test_no_import_cycles(modules: list[str], imports: list[Import]) -> None:
    cycles = find_cycles(build_graph(modules, imports))
    if cycles:
        sites = sites_by_edge(imports)
        described = "\n".join(describe_cycle(cycle, comp, sites) for cycle, comp in cycles)
        pytest.fail(
            f"{len(cycles)} import cycle(s) in legion/ (one shortest cycle per strongly "
            f"connected component; lazy and type-only imports count):\n{described}\n\n"
            "Break each cycle: define a Protocol next to the module that uses the "
            "dependency and have the lower module satisfy it, or publish an event instead "
            "of calling back up (see docs/architecture.md).",
            pytrace=False,
        )


def test_imports_follow_the_layers(modules: list[str], imports: list[Import]) -> None:
    entries = layer_entries()
    plugin_api = plugin_api_violations(imports)
    upward = [imp for imp in upward_imports(imports, entries) if imp not in plugin_api]
    sections = [
        (
            "Imports of a higher layer (a module may import its own layer or lower ones only):",
            [describe_edge(imp, entries) for imp in upward],
        ),
        (
            "CLI imports beyond the contract (the CLI talks to the daemon over the socket; "
            "the exceptions are in ALLOWED, lazy only):",
            [describe_edge(imp, entries) for imp in cli_violations(imports, entries)],
        ),
        (
            "The public plugin API must not import daemon internals:",
            [describe_edge(imp, entries) for imp in plugin_api],
        ),
        (
            "Modules in no layer (add it to LAYERS in tests/test_architecture.py and to "
            "docs/architecture.md):",
            [f"  {module}" for module in unassigned_modules(modules, entries)],
        ),
    ]
    failures = [f"{title}\n" + "\n".join(lines) for title, lines in sections if lines]
    if failures:
        layers = "\n".join(f"  {rank}. {name}" for rank, (name, _) in enumerate(LAYERS))
        pytest.fail("\n\n".join([*failures, f"Layers, bottom to top:\n{layers}"]), pytrace=False)


def test_layer_table_matches_the_docs() -> None:
    expected = render_docs_block()
    lines = find_docs_block(DOCS.read_text(encoding="utf-8")) if DOCS.exists() else None
    if lines is None:
        pytest.fail(
            f"docs/architecture.md has no layer table. Add a fenced block whose first line "
            f"is {DOCS_HEADER!r}, one line per layer as 'name: prefix, prefix, ...' "
            f"(bottom to top, as LAYERS in tests/test_architecture.py):\n\n{expected}",
            pytrace=False,
        )
    documented = parse_docs_block(lines)
    assert documented == LAYERS, (
        "The layer table in docs/architecture.md differs from LAYERS in "
        f"tests/test_architecture.py; it should read:\n\n{expected}"
    )


def test_layer_table_is_well_formed() -> None:
    names = [name for name, _ in LAYERS]
    prefixes = [parse_entry(text)[0] for _, texts in LAYERS for text in texts]
    assert len(set(names)) == len(names), f"a layer name appears twice: {names}"
    duplicates = sorted({p for p in prefixes if prefixes.count(p) > 1})
    assert not duplicates, f"entries listed twice in LAYERS: {duplicates}"
    assert set(names) >= CLI_MAY_IMPORT_LAYERS


# -- self-tests of the checker on synthetic packages --------------------------------------


def write_package(root: Path, files: Mapping[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def test_checker_finds_a_cycle_through_type_only_and_lazy_imports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "legion/__init__.py": "",
            "legion/a.py": "import legion.b\n",
            "legion/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from legion.c import Thing\n"
            ),
            "legion/c.py": "def later() -> None:\n    from . import a\n",
            "legion/d.py": "import legion.a\n",
        },
    )
    found = collect_imports(tmp_path)
    cycles = find_cycles(build_graph(discover_modules(tmp_path), found))
    assert cycles == [
        (["legion.a", "legion.b", "legion.c", "legion.a"], ["legion.a", "legion.b", "legion.c"])
    ]
    flags = {(imp.importer, imp.imported): (imp.lazy, imp.type_only) for imp in found}
    assert flags[("legion.b", "legion.c")] == (False, True)
    assert flags[("legion.c", "legion.a")] == (True, False)


def test_checker_picks_a_shortest_cycle_and_ignores_acyclic_parts() -> None:
    graph: dict[str, set[str]] = {
        "x": {"y"},
        "y": {"z", "x"},
        "z": {"w"},
        "w": {"x"},
        "v": {"x"},
    }
    assert find_cycles(graph) == [(["x", "y", "x"], ["w", "x", "y", "z"])]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_checker_resolves_imports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "legion/__init__.py": "__version__ = '1'\n",
            "legion/errors.py": "from legion import __version__\n",
            "legion/daemon/__init__.py": "from . import store\nfrom .store import Store\n",
            "legion/daemon/store/__init__.py": "class Store: ...\n",
            "legion/daemon/store/writer.py": (
                "from .. import events\nfrom ..events import Bus\nfrom ...errors import E\n"
                "import legion.daemon.store\nimport os\nfrom legion.daemon import store\n"
            ),
            "legion/daemon/events.py": (
                "import importlib\nBus = 1\n"
                "def load() -> None:\n    importlib.import_module('legion.daemon.store.writer')\n"
            ),
        },
    )
    edges = {(imp.importer, imp.imported) for imp in collect_imports(tmp_path)}
    assert edges == {
        ("legion.errors", "legion"),
        ("legion.daemon", "legion.daemon.store"),
        ("legion.daemon.store.writer", "legion.daemon.events"),
        ("legion.daemon.store.writer", "legion.errors"),
        ("legion.daemon.store.writer", "legion.daemon.store"),
        ("legion.daemon.events", "legion.daemon.store.writer"),
    }


def test_checker_matches_prefixes_on_dot_boundaries() -> None:
    entries = layer_entries()

    def layer(module: str) -> str | None:
        entry = layer_of(module, entries)
        return entry.layer if entry else None

    assert layer("legion") == "contract"
    assert layer("legion.daemon") == "infrastructure"
    assert layer("legion.daemon.services") is None
    assert layer("legion.daemon.tools.sandbox") == "infrastructure"
    assert layer("legion.daemon.tools.sandbox.x") == "infrastructure"
    assert layer("legion.daemon.tools.sandbox_kernel") == "infrastructure"
    assert layer("legion.daemon.tools.sandboxes") == "domain"
    assert layer("legion.daemon.tools.registry") == "domain"
    assert layer("legion.daemon.tools.kernel") == "adapters"
    assert layer("legion.daemon.memory.embedders") == "infrastructure"
    assert layer("legion.cli.commands.agents") == "cli"
    assert layer("legion.other") is None


def test_checker_applies_the_cli_and_plugin_rules() -> None:
    def imp(importer: str, imported: str, *, lazy: bool = False) -> Import:
        return Import(importer, imported, Path("x.py"), 1, lazy=lazy, type_only=False)

    entries = layer_entries()
    eager_app = imp("legion.cli.commands.daemon_cmd", "legion.daemon.app")
    lazy_app = imp("legion.cli.commands.daemon_cmd", "legion.daemon.app", lazy=True)
    lazy_store = imp("legion.cli.main", "legion.daemon.store", lazy=True)
    fine = [imp("legion.cli.main", "legion.protocol"), imp("legion.cli.main", "legion.cli.render")]
    assert cli_violations([eager_app, lazy_app, lazy_store, *fine], entries) == [
        eager_app,
        lazy_store,
    ]
    upward = imp("legion.plugin", "legion.daemon.tools.registry")
    assert plugin_api_violations([upward, imp("legion.plugin", "legion.errors")]) == [upward]
    assert upward_imports(
        [upward, imp("legion.daemon.methods.x", "legion.daemon.store")], entries
    ) == [upward]


def test_checker_reads_the_docs_block() -> None:
    markdown = f"Text.\n\n{render_docs_block()}\n\nMore text.\n"
    lines = find_docs_block(markdown)
    assert lines is not None
    assert parse_docs_block(lines) == LAYERS
    assert find_docs_block("```\nsomething else\n```\n") is None
