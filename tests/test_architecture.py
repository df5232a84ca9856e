"""The architecture holds: layers, no cycles, the flown dependencies, a pure recovery machine.

Everything here reads the source with :mod:`ast` and imports none of it, so it is fast, needs no
compiled extension, and sees the imports inside functions too (those are how the code keeps
start-up cheap, not a licence to import upward). The rules, from issue 8 and the design notes:

* every module under ``flight/`` has a layer in :data:`LAYERS` and imports only from its own
  layer or below, at any level;
* no import cycles among flight modules, neither at module level nor through function-level
  imports;
* ``flight/`` imports at module level only the flown dependencies and the standard library;
  ground-only extras (onnx) are imported lazily and only by the modules named for them;
* the recovery machine does no I/O and reads no clock of its own (events carry its ``now``);
* only ``flight/native.py`` loads the compiled extension;
* ``flight/`` never imports ``hil``; ``tools/`` never imports ``tests``.

``python tests/test_architecture.py`` prints the import graph with each module's layer, to help
place a new module.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# The declared design. Bottom layer first; a module may import from its own layer or below.
# An entry is a module name, or ``pkg.*`` for a package and everything in it (the most specific
# entry wins). Entries for modules that do not exist yet are allowed: they are the planned
# names (supervisor split, recovery package, op registry, CLI rendering), so a merge only has to
# touch a line here when a name changes.
# --------------------------------------------------------------------------------------------
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # What every module may say: the exception tree, event IDs, redundancy modes. Stdlib only.
    ("vocabulary", ("flight", "flight.errors", "flight.events", "flight.modes")),
    # The machine underneath: the C extension and its only loader, shared memory, numba cache.
    (
        "platform",
        ("flight.native", "flight._native", "flight.shm", "flight.jitcache", "flight.atomic"),
    ),
    # Keeping bytes right: CRCs, voting, protected memory and its scrubber.
    ("integrity", ("flight.crc", "flight.vote", "flight.memory", "flight.scrub")),
    # njit kernels: arrays in, arrays out.
    ("kernels", ("flight.kernels.*",)),
    # Model file, graph, op registry, rewrites, planner, executor, loaders, ONNX converter.
    ("model", ("flight.model.*",)),
    # Replicas of a model under TMR / DWC / simplex, and their vote points.
    ("redundancy", ("flight.redundancy",)),
    # The recovery machine: pure decisions (test_recovery_machine_does_no_io_and_reads_no_clock).
    ("recovery", ("flight.recovery.*",)),
    # The space link: packets, security, declarations, transports, CFDP, downlink store, and the
    # service that ties them to a supervisor. Below the services, so the mission loader can use
    # its parsers (contact windows, link URLs); the CDS and the supervisor reach it by injection.
    ("link", ("flight.link.*",)),
    # What the supervisor runs and keeps: processes, watchdogs, the critical data store, the
    # mission file, simulated radiation and its injector, the boot self-test.
    (
        "services",
        (
            "flight.partition",
            "flight.watchdog",
            "flight.cds",
            "flight.mission",
            "flight.environments",
            "flight.radiation",
            "flight.inject",
            "flight.selftest",
        ),
    ),
    # The supervisor's parts (planned split of flight/supervisor.py).
    (
        "supervisor parts",
        (
            "flight.health",
            "flight.telemetry",
            "flight.testmode",
            "flight.jobs",
            "flight.commanding",
            "flight.upload",
            "flight.agent",
        ),
    ),
    ("supervisor", ("flight.supervisor",)),
    # The command line and its rendering (``flight.cli.*`` also covers a cli package).
    ("cli", ("flight.cli.*", "flight.cli_render", "flight.cli_link", "flight.render")),
)

# Upward edges the code has today that the design does not want: (importer, imported) -> why it
# is tolerated and what removes it. Empty: the code on main layers cleanly. An entry that no
# longer matches a real import fails the test, so a fixed edge gets its entry removed.
KNOWN_UPWARD_IMPORTS: dict[tuple[str, str], str] = {}

# Loops closed only by function-level imports that are tolerated for now: the set of modules in
# the loop -> why, and what removes it. Empty: main has none. Module-level loops are never allowed.
KNOWN_FUNCTION_LEVEL_CYCLES: dict[frozenset[str], str] = {}

# Third-party packages flight/ may import at module level (the flown image's dependencies).
FLOWN_PACKAGES = frozenset({"numpy", "numba", "llvmlite", "cffi", "crcmod", "msgpack"})
# Third-party packages any flight module may import, but only inside a function: the serial link
# (pyserial, COBS framing) is optional on a board and not a dependency of flight yet. Move them to
# FLOWN_PACKAGES if they become dependencies.
LAZY_PACKAGES = frozenset({"serial", "cobs"})
# Ground-only extras: imported inside functions, and only by the modules named here.
GROUND_EXTRAS: dict[str, frozenset[str]] = {
    "flight.model.onnx_import": frozenset({"onnx"}),
    "flight.link.dictionary": frozenset({"yamcs"}),
}

# The recovery machine: today flight/recovery.py, tomorrow the package flight/recovery/.
RECOVERY = "flight.recovery"
# The flight modules the recovery machine may import besides its own package. flight.events
# keeps a default clock for EventLog, but the machine only receives a log and stamps each event
# with its own ``now`` (``at=``); it never reads that clock itself.
RECOVERY_MAY_IMPORT = frozenset({"flight", "flight.errors", "flight.events", "flight.modes"})
# Standard-library modules that do I/O, start or signal processes, read a clock or hold hidden
# state: the machine is a pure function of (state, input, now).
IO_AND_CLOCK_MODULES = frozenset(
    {
        "_thread", "asyncio", "calendar", "concurrent", "ctypes", "datetime", "dbm", "fcntl",
        "ftplib", "glob", "http", "importlib", "io", "logging", "mmap", "multiprocessing", "os",
        "pathlib", "platform", "pty", "random", "resource", "sched", "secrets", "select",
        "selectors", "shelve", "shutil", "signal", "smtplib", "socket", "socketserver",
        "sqlite3", "ssl", "subprocess", "sys", "tempfile", "termios", "threading", "time",
        "tty", "urllib", "uuid", "zoneinfo",
    }
)  # fmt: skip
IO_BUILTINS = frozenset({"open", "print", "input", "breakpoint"})

# The compiled extension and the one module allowed to load it.
NATIVE_EXTENSION = "flight._native"
NATIVE_LOADER = "flight.native"
# Ways to load a shared object other than through flight.native.
LOADER_MODULES = frozenset({"ctypes", "cffi", "_ctypes"})
LOADER_CALLS = frozenset(
    {"dlopen", "CDLL", "PyDLL", "WinDLL", "OleDLL", "LoadLibrary", "ExtensionFileLoader"}
)

# tools/ files that import from tests/ today, with the fix in progress; the check runs as a strict
# xfail for them, so it turns red (XPASS) the day the fix merges: then delete the entry.
TOOLS_IMPORTING_TESTS: dict[str, str] = {}


# --------------------------------------------------------------------------------------------
# The scanner
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Import:
    """One imported name as the importing module sees it."""

    importer: str  # dotted name of the importing module
    target: str  # dotted name imported: the submodule where ``from pkg import sub`` names one
    path: Path
    line: int
    level: str  # "module", "function" or "type-checking" (under ``if TYPE_CHECKING:``)
    via_package: str | None = None  # set when target is a package run by importing a submodule

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    @property
    def where(self) -> str:
        return f"{_rel(self.path)}:{self.line}"

    def describe(self) -> str:
        how = {"module": "at module level", "function": "in a function"}.get(
            self.level, "under TYPE_CHECKING"
        )
        via = f" (its __init__ runs on importing {self.via_package})" if self.via_package else ""
        return f"{self.where}: {self.importer} imports {self.target}{via} {how}"


def _rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(*folders: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for folder in folders for p in (root / folder).rglob("*.py"))


@cache
def known_modules() -> frozenset[str]:
    """Every module with a source file in the repository, plus the compiled extension."""
    names = {module_name(p) for p in source_files("flight", "hil", "tools", "tests")}
    return frozenset(names | {NATIVE_EXTENSION})


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, importer: str, is_package: bool, path: Path, known: frozenset[str]):
        self.importer, self.is_package, self.path, self.known = importer, is_package, path, known
        self.functions = 0
        self.type_checking = 0
        self.constants: dict[str, str] = {}
        self.found: list[Import] = []

    @property
    def level(self) -> str:
        if self.functions:
            return "function"
        return "type-checking" if self.type_checking else "module"

    def _add(self, target: str, line: int) -> None:
        level = self.level
        self.found.append(Import(self.importer, target, self.path, line, level))
        # Importing a.b.c runs a/__init__ and a/b/__init__ first, unless the importer is inside.
        parts = target.split(".")
        for n in range(1, len(parts)):
            package = ".".join(parts[:n])
            inside = self.importer == package or self.importer.startswith(package + ".")
            if package in self.known and not inside:
                self.found.append(
                    Import(self.importer, package, self.path, line, level, via_package=target)
                )

    def _function(self, node: ast.AST) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.type_checking += 1
            for child in node.body:
                self.visit(child)
            self.type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        targets = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            targets.append(sub if alias.name != "*" and sub in self.known else base)
        for target in dict.fromkeys(targets):
            self._add(target, node.lineno)

    def visit_Module(self, node: ast.Module) -> None:
        # Module-level string constants, for import_module(NAME) below.
        for stmt in node.body:
            target = (
                stmt.targets[0] if isinstance(stmt, ast.Assign) else getattr(stmt, "target", None)
            )
            value = getattr(stmt, "value", None)
            if (
                isinstance(stmt, ast.Assign | ast.AnnAssign)
                and isinstance(target, ast.Name)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                self.constants[target.id] = value.value
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module(name) and __import__(name), name a literal or a module constant.
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if called in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                self._add(arg.value, node.lineno)
            elif isinstance(arg, ast.Name) and arg.id in self.constants:
                self._add(self.constants[arg.id], node.lineno)
        self.generic_visit(node)

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.importer.split(".")
        if not self.is_package:
            package.pop()
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, *([node.module] if node.module else [])])


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports_of(path: Path) -> list[Import]:
    """Every import in one source file, at any level, with the line it is on."""
    name = module_name(path) if path.is_relative_to(ROOT) else path.stem  # stem: a scratch file
    collector = _Collector(name, path.name == "__init__.py", path, known_modules())
    collector.visit(_tree(path))
    return collector.found


def flight_files() -> list[Path]:
    return source_files("flight")


def all_flight_imports() -> Iterator[Import]:
    for path in flight_files():
        yield from imports_of(path)


def is_flight(name: str) -> bool:
    return name == "flight" or name.startswith("flight.")


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
def layer_of(module: str) -> int | None:
    """Index in LAYERS of the most specific entry that matches module (exact beats ``pkg.*``)."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if entry.endswith(".*"):
                package = entry[:-2]
                if module == package or module.startswith(package + "."):
                    candidate = (len(package), index)
                else:
                    continue
            elif module == entry:
                candidate = (10_000, index)
            else:
                continue
            if best is None or candidate[0] > best[0]:
                best = candidate
    return None if best is None else best[1]


def layer_label(module: str) -> str:
    index = layer_of(module)
    return "no layer" if index is None else f"layer {index} '{LAYERS[index][0]}'"


def upward_imports() -> list[Import]:
    found = []
    for imp in all_flight_imports():
        if not is_flight(imp.target) or imp.target == imp.importer:
            continue
        own, theirs = layer_of(imp.importer), layer_of(imp.target)
        if own is not None and theirs is not None and theirs > own:
            found.append(imp)
    return found


# --------------------------------------------------------------------------------------------
# Cycles
# --------------------------------------------------------------------------------------------
def import_graph(levels: Iterable[str]) -> dict[str, dict[str, list[Import]]]:
    """importer -> imported flight module -> the imports making that edge."""
    wanted = set(levels)
    modules = {module_name(p) for p in flight_files()}
    graph: dict[str, dict[str, list[Import]]] = {m: {} for m in modules}
    for imp in all_flight_imports():
        if imp.level in wanted and imp.target in modules:
            graph[imp.importer].setdefault(imp.target, []).append(imp)
    return graph


def cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_cycle(graph: dict[str, dict[str, list[Import]]], component: list[str]) -> list[str]:
    """The shortest loop inside a strongly connected component, as [a, b, ..., a]."""
    members = set(component)
    best: list[str] = []
    for start in component:
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            following = []
            for node in frontier:
                for succ in sorted(graph[node]):
                    if succ in members and succ not in parents:
                        parents[succ] = node
                        following.append(succ)
            frontier = following
        if start in parents:
            path = [start]
            while len(path) == 1 or path[-1] != start:
                path.append(parents[path[-1]])
            path.reverse()
            if not best or len(path) < len(best):
                best = path
    return best


def describe_cycles(
    graph: dict[str, dict[str, list[Import]]], skip: Iterable[frozenset[str]] = ()
) -> str:
    lines = []
    for component in cycles(graph):
        if frozenset(component) in set(skip):
            continue
        loop = shortest_cycle(graph, component)
        lines.append(f"{' -> '.join(loop)} ({len(component)} modules tangled: {component}):")
        for importer, target in itertools.pairwise(loop):
            lines.extend("    " + imp.describe() for imp in graph[importer][target])
    if lines:
        lines.append(
            "break each loop: move what both sides need into a lower module, or pass it in "
            "from above (a callable, an object)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The scanner sees what it must (so the rules below cannot pass by seeing nothing)
# --------------------------------------------------------------------------------------------
def _scan(tmp_path: Path, relpath: str, source: str) -> list[Import]:
    path = tmp_path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.relative_to(tmp_path).parents:
        if parent.parts:
            (tmp_path / parent / "__init__.py").touch()
    path.write_text(source)
    known = frozenset(module_name(p, tmp_path) for p in tmp_path.rglob("*.py")) | {NATIVE_EXTENSION}
    collector = _Collector(module_name(path, tmp_path), path.name == "__init__.py", path, known)
    collector.visit(ast.parse(source))
    return collector.found


def test_scanner_tells_levels_submodules_and_relative_imports(tmp_path):
    (tmp_path / "flight" / "model").mkdir(parents=True)
    (tmp_path / "flight" / "errors.py").touch()
    (tmp_path / "flight" / "model" / "graph.py").touch()
    found = _scan(
        tmp_path,
        "flight/model/io.py",
        "import os\n"
        "from flight import errors, __version__\n"
        "_KERNELS = 'flight.kernels'\n"
        "from . import graph\n"
        "from ..errors import FlightError\n"
        "if TYPE_CHECKING:\n"
        "    import flight.supervisor\n"
        "def load():\n"
        "    import onnx\n"
        "    importlib.import_module('flight._native')\n"
        "    importlib.import_module(_KERNELS)\n"
        "class C:\n"
        "    import msgpack\n",
    )
    seen = {(i.target, i.level, i.line) for i in found if i.via_package is None}
    assert seen == {
        ("os", "module", 1),
        ("flight.errors", "module", 2),
        ("flight", "module", 2),
        ("flight.model.graph", "module", 4),
        ("flight.errors", "module", 5),
        ("flight.supervisor", "type-checking", 7),
        ("onnx", "function", 9),
        ("flight._native", "function", 10),
        ("flight.kernels", "function", 11),
        ("msgpack", "module", 13),
    }
    # flight.model.io is inside flight and flight.model: no implicit package imports for those.
    assert [i for i in found if i.via_package] == []
    outside = _scan(tmp_path, "flight/cli.py", "from flight.model.graph import Graph\n")
    assert {(i.target, i.via_package) for i in outside} == {
        ("flight.model.graph", None),
        ("flight.model", "flight.model.graph"),
    }


def test_scanner_sees_the_known_edges_of_the_real_code():
    edges = {(i.importer, i.target, i.level) for i in all_flight_imports()}
    assert ("flight.crc", "flight.native", "module") in edges
    assert ("flight.native", NATIVE_EXTENSION, "module") in edges
    assert any(is_flight(t) and level == "function" for _, t, level in edges)
    assert ("flight.model.onnx_import", "onnx", "function") in edges


def test_cycle_finder_finds_a_cycle_and_a_self_import():
    imp = Import("a", "b", ROOT / "a.py", 1, "module")
    graph = {"a": {"b": [imp]}, "b": {"c": [imp]}, "c": {"a": [imp]}, "d": {"d": [imp]}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]
    assert cycles({"a": {"b": [imp]}, "b": {}}) == []
    graph["a"]["c"] = [imp]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "c", "a"]
    assert shortest_cycle(graph, ["d"]) == ["d", "d"]


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------
def test_layer_map_is_well_formed():
    entries = [entry for _, group in LAYERS for entry in group]
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert not duplicates, f"in more than one layer of LAYERS: {duplicates}"
    names = [name for name, _ in LAYERS]
    assert len(set(names)) == len(names), f"layer names repeat: {names}"
    outside = [e for e in entries if not is_flight(e.removesuffix(".*"))]
    assert not outside, f"LAYERS entries outside flight: {outside}"


def test_every_flight_module_has_a_layer():
    missing = [p for p in flight_files() if layer_of(module_name(p)) is None]
    assert not missing, "\n".join(
        f"{_rel(p)} ({module_name(p)}) has no layer: place it in LAYERS in "
        "tests/test_architecture.py, in the lowest layer that holds every flight module it "
        "imports (a module may import only from its own layer or below)"
        for p in missing
    )


def test_no_flight_module_imports_from_a_higher_layer():
    found = upward_imports()
    unexpected = [i for i in found if (i.importer, i.target) not in KNOWN_UPWARD_IMPORTS]
    assert not unexpected, "imports from a higher layer (see LAYERS):\n" + "\n".join(
        f"  {i.describe()}: {i.importer} is in {layer_label(i.importer)}, {i.target} in "
        f"{layer_label(i.target)}. Move the shared part down, or pass it in from above "
        "(a callable, an object); a lazy import does not make it right"
        for i in unexpected
    )
    stale = sorted(set(KNOWN_UPWARD_IMPORTS) - {(i.importer, i.target) for i in found})
    assert not stale, f"KNOWN_UPWARD_IMPORTS entries no longer needed, delete them: {stale}"


def test_no_import_cycles_at_module_level():
    report = describe_cycles(import_graph(["module"]))
    assert not report, "import cycles among flight modules at module level:\n" + report


def test_no_import_cycles_through_function_level_imports():
    """A lazy import that closes a loop is still a loop in the design: it only moves the failure
    from import time to the first call, and it means two modules share one concern. Forbidden
    like the module-level ones (none exist today). TYPE_CHECKING imports do not count here."""
    graph = import_graph(["module", "function"])
    found = cycles(graph)
    report = describe_cycles(graph, skip=KNOWN_FUNCTION_LEVEL_CYCLES)
    assert not report, (
        "import cycles among flight modules through function-level imports:\n" + report
    )
    stale = sorted(
        sorted(known) for known in set(KNOWN_FUNCTION_LEVEL_CYCLES) - {frozenset(c) for c in found}
    )
    assert not stale, f"KNOWN_FUNCTION_LEVEL_CYCLES entries no longer needed, delete them: {stale}"


def _third_party(imp: Import) -> bool:
    return imp.top not in sys.stdlib_module_names and imp.top != "flight"


def test_flight_imports_only_flown_packages_at_module_level():
    bad = [
        i
        for i in all_flight_imports()
        if i.level != "function" and _third_party(i) and i.top not in FLOWN_PACKAGES
    ]
    assert not bad, (
        f"flight/ may import at module level only {sorted(FLOWN_PACKAGES)}, flight and the "
        "standard library (the flown image has nothing else; anything optional is imported "
        "inside the function that needs it):\n" + "\n".join(f"  {i.describe()}" for i in bad)
    )


def test_flight_imports_ground_extras_only_lazily_and_only_where_named():
    bad = [
        i
        for i in all_flight_imports()
        if i.level == "function"
        and _third_party(i)
        and i.top not in FLOWN_PACKAGES | LAZY_PACKAGES
        and i.top not in GROUND_EXTRAS.get(i.importer, frozenset())
    ]
    assert not bad, (
        "third-party imports inside flight functions must be flown packages, the serial link's "
        f"{sorted(LAZY_PACKAGES)}, or a ground extra of a module named in GROUND_EXTRAS "
        f"({GROUND_EXTRAS}):\n" + "\n".join(f"  {i.describe()}" for i in bad)
    )


def recovery_files() -> list[Path]:
    return [p for p in flight_files() if layer_of(module_name(p)) == layer_of(RECOVERY)]


def test_recovery_machine_does_no_io_and_reads_no_clock():
    files = recovery_files()
    assert files, f"no source found for the recovery machine {RECOVERY}"
    bad = []
    for path in files:
        for i in imports_of(path):
            if is_flight(i.target):
                if i.target not in RECOVERY_MAY_IMPORT and layer_of(i.target) != layer_of(RECOVERY):
                    bad.append(f"  {i.describe()}: only {sorted(RECOVERY_MAY_IMPORT)} allowed")
            elif i.top in IO_AND_CLOCK_MODULES:
                bad.append(f"  {i.describe()}: I/O, processes, a clock or hidden state")
            elif i.top not in sys.stdlib_module_names:
                bad.append(f"  {i.describe()}: third-party (the machine is plain Python)")
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in IO_BUILTINS
            ):
                bad.append(f"  {_rel(path)}:{node.lineno}: calls {node.func.id}() (I/O)")
    assert not bad, (
        "the recovery machine only decides: no I/O, no clock of its own (inputs carry `now`), "
        "no process control; the supervisor carries out its actions:\n" + "\n".join(bad)
    )


def test_only_flight_native_loads_the_extension():
    bad = []
    for path in source_files("flight", "hil"):
        module = module_name(path)
        if module == NATIVE_LOADER:
            continue
        for i in imports_of(path):
            if i.target == NATIVE_EXTENSION:
                bad.append(f"  {i.describe()}: use flight.native (ffi, lib, check_status)")
            elif i.top in LOADER_MODULES:
                bad.append(f"  {i.describe()}: shared objects are loaded by flight.native only")
        for node in ast.walk(_tree(path)):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.id
                if isinstance(node, ast.Name)
                else None
            )
            if name in LOADER_CALLS:
                bad.append(f"  {_rel(path)}:{node.lineno}: {name} loads a shared object")
    assert not bad, f"only {NATIVE_LOADER} loads {NATIVE_EXTENSION}:\n" + "\n".join(bad)


def test_flight_never_imports_hil():
    bad = [i for i in all_flight_imports() if i.top == "hil"]
    assert not bad, "flight/ is flown and hil/ never is:\n" + "\n".join(
        f"  {i.describe()}" for i in bad
    )


def _mentions_tests_folder(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Constant)
            and isinstance(sub.value, str)
            and "tests" in sub.value.replace("\\", "/").split("/")
        ):
            return True
    return False


def _is_sys_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def reach_into_tests(path: Path) -> list[str]:
    """How a tools/ file reaches into tests/: imports of tests or of a module that lives only
    in tests/, and sys.path changes naming a tests folder."""
    test_only = {module_name(p).rsplit(".", 1)[-1] for p in source_files("tests")} - {
        module_name(p).rsplit(".", 1)[-1] for p in source_files("tools")
    }
    found = [
        f"{i.describe()}"
        for i in imports_of(path)
        if not i.via_package and (i.top == "tests" or i.top in test_only)
    ]
    for node in ast.walk(_tree(path)):
        changes_path = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("insert", "append", "extend")
            and _is_sys_path(node.func.value)
        ) or (
            isinstance(node, ast.AugAssign | ast.Assign)
            and any(
                _is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        )
        if changes_path and _mentions_tests_folder(node):
            found.append(f"{_rel(path)}:{node.lineno}: puts a tests folder on sys.path")
    return found


def _tool_params() -> list:
    params = []
    for path in source_files("tools"):
        reason = TOOLS_IMPORTING_TESTS.get(_rel(path))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(path, marks=marks, id=_rel(path)))
    return params


@pytest.mark.parametrize("path", _tool_params())
def test_tool_never_imports_tests(path):
    found = reach_into_tests(path)
    assert not found, (
        "tools/ must not depend on tests/ (tests may change or be absent in a release tree); "
        "move the shared helper into tools/ or flight/:\n" + "\n".join(f"  {f}" for f in found)
    )


def test_tools_importing_tests_entries_name_real_files():
    missing = [name for name in TOOLS_IMPORTING_TESTS if not (ROOT / name).is_file()]
    assert not missing, f"TOOLS_IMPORTING_TESTS names files that do not exist: {missing}"


def test_the_tests_import_detector_sees_a_sys_path_insert(tmp_path):
    tool = tmp_path / "tool.py"
    tool.write_text(
        "import sys\nfrom pathlib import Path\n"
        "sys.path.insert(0, str(Path(__file__).parent / 'tests' / 'x'))\n"
        "sys.path += ['../tests']\n"
    )
    assert [f.rsplit(": ", 1)[-1] for f in reach_into_tests(tool)] == [
        "puts a tests folder on sys.path",
        "puts a tests folder on sys.path",
    ]


# --------------------------------------------------------------------------------------------
def main() -> None:
    """Print each flight module's layer and its flight imports (``F`` marks function level)."""
    upward = set(upward_imports())
    for path in flight_files():
        module = module_name(path)
        print(f"{module}  [{layer_label(module)}]")
        seen = set()
        for i in imports_of(path):
            if i.via_package or (i.target, i.level) in seen:
                continue
            seen.add((i.target, i.level))
            if is_flight(i.target) or i.top not in sys.stdlib_module_names:
                mark = {"module": " ", "function": "F"}.get(i.level, "T")
                up = "  UPWARD" if i in upward else ""
                where = layer_label(i.target) if is_flight(i.target) else "third-party"
                print(f"    {mark} {i.line:5d} {i.target}  [{where}]{up}")


if __name__ == "__main__":
    main()
