"""Package edges (README, "Architecture in words"): which part of taskfleet may import which.

Read two ways. Statically, with ``ast``, from every import statement under
``src/taskfleet``: at module level, inside functions and under ``TYPE_CHECKING`` alike, as
an edge is an edge however it is reached. And at run time, in a fresh interpreter, for the
agent and the task server, since what a managed computer or a relay loads is what costs:
that is the agent's import check that ``bench/agent_idle.py`` used to run (SPEC section 6).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import taskfleet

PACKAGE = Path(taskfleet.__file__).parent
ROOT = "taskfleet"  # the package's own __init__: __version__ only, import-free on purpose

# What each part may import besides itself, ROOT, the standard library and third-party
# packages (those are below). A part missing here is a new one: place it.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),  # the one error tree, under everything
    "protocol": frozenset({"errors"}),  # the wire protocol: no component
    "agent": frozenset({"protocol", "errors"}),  # small, on every managed computer
    "server": frozenset({"protocol", "errors"}),  # the HTTP plumbing both servers run on
    "storage": frozenset({"errors"}),
    # What agents call, served by the task server and by the NS (fallback role): neither.
    "agent_endpoints": frozenset({"server", "protocol", "errors"}),
    # Never the NS (only its API, over HTTP), the agent or the console.
    "taskserver": frozenset({"agent_endpoints", "server", "protocol", "errors"}),
    # Never the console (the composition root, taskfleet.app, puts it on the NS's app)
    # nor the task server (what both serve is agent_endpoints).
    "ns": frozenset({"agent_endpoints", "server", "storage", "protocol", "errors"}),
    # Pages over the NS's services and its read side (issue 10): never storage.
    "console": frozenset({"ns", "server", "protocol", "errors"}),
    "simulator": frozenset({"protocol", "errors"}),
}
# Files allowed one more part than their own part's rule, each only until the work named
# beside it lands; keep this narrow (a file, what else it may import, why). An allowance
# no longer used fails the tests below, so it cannot outlive its reason.
EXCEPTIONS: dict[str, frozenset[str]] = {}
# The console reads through the NS (ns.*_queries, ns.*_views and the services): no query
# of its own, so no database library, except in the files EXCEPTIONS still lists.
CONSOLE_DATABASE_EXCEPTIONS = frozenset(EXCEPTIONS)

# Composition roots and entry points: they may import any part, and no part imports them.
ROOTS = frozenset({"app", "cli", "entrypoint", "__main__"})

# Only the NS side touches a database: a task server (and server.errors, which it shares)
# must not even load SQLAlchemy.
DATABASE = frozenset({"sqlalchemy", "alembic", "asyncpg", "psycopg", "psycopg2", "aiosqlite"})
WITHOUT_DATABASE = ("protocol", "agent", "server", "agent_endpoints", "taskserver", "simulator")

# What the agent may load beyond the standard library and taskfleet: httpx and its
# dependencies, and cryptography, which protocol.pki and protocol.trust need to make the
# agent's key and certificate request and to check the NS's CA (docs/security.md).
# ``_cffi_backend`` and ``_openssl`` are top-level modules cryptography itself loads.
AGENT_THIRD_PARTY = frozenset(
    {"httpx", "httpcore", "h11", "anyio", "sniffio", "idna", "certifi", "h2", "hpack"}
    | {"hyperframe", "socksio", "brotli", "zstandard", "exceptiongroup", "typing_extensions"}
    | {"cryptography", "_cffi_backend", "_openssl"}
)


@dataclass(frozen=True)
class Edge:
    source: Path  # the importing file
    line: int
    target: str  # the imported module, as written (resolved when relative)

    @property
    def where(self) -> str:
        return f"{self.source.relative_to(PACKAGE.parent)}:{self.line} imports {self.target}"


def part_of_file(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return ROOT if first == "__init__.py" else first.removesuffix(".py")


def file_key(path: Path) -> str:
    """``console/policy.py``: how EXCEPTIONS names a file."""
    return path.relative_to(PACKAGE).as_posix()


def part_of_module(name: str) -> str:
    """``taskfleet.ns.hub`` -> ``ns``; ``taskfleet`` (or a name in its __init__) -> ROOT."""
    parts = name.split(".")
    if len(parts) == 1:
        return ROOT
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return parts[1]
    return ROOT  # from taskfleet import __version__


def imports(path: Path) -> Iterator[Edge]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Edge(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from this module's package, level - 1 up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from taskfleet.ns import hub" imports the module taskfleet.ns.hub
                yield Edge(path, node.lineno, f"{base}.{alias.name}")


def all_edges() -> list[Edge]:
    return [edge for path in sorted(PACKAGE.rglob("*.py")) for edge in imports(path)]


def third_party(name: str) -> str | None:
    top = name.split(".")[0]
    return None if top == ROOT or top in sys.stdlib_module_names else top


def test_every_part_has_a_place_in_the_rules() -> None:
    # Given the package's top-level modules and subpackages
    found = {part_of_file(path) for path in PACKAGE.rglob("*.py")}
    # Then each is a part with rules, a composition root or entry point, or the package
    assert found - set(MAY_IMPORT) - ROOTS - {ROOT} == set()


def test_parts_import_only_what_the_rules_allow() -> None:
    # Given every import statement under src/taskfleet
    crossed = []
    for edge in all_edges():
        source = part_of_file(edge.source)
        if source in ROOTS or edge.target.split(".")[0] != ROOT:
            continue
        target = part_of_module(edge.target)
        # Then a part imports only itself, ROOT and what MAY_IMPORT lists for it
        allowed = MAY_IMPORT.get(source, frozenset()) | {source, ROOT}
        allowed |= EXCEPTIONS.get(file_key(edge.source), frozenset())
        if target not in allowed:
            crossed.append(f"{edge.where}: {source} may import {sorted(allowed - {ROOT})}")
    assert crossed == []


def test_the_console_hangs_from_the_ns_and_never_the_reverse() -> None:
    # Given the edges between the NS, the console and the task server
    edges = {
        (part_of_file(edge.source), part_of_module(edge.target))
        for edge in all_edges()
        if edge.target.split(".")[0] == ROOT
    }
    # Then the console uses the NS, and neither the NS nor the task server imports the other
    assert ("console", "ns") in edges
    assert ("ns", "console") not in edges
    assert ("ns", "taskserver") not in edges
    assert {("taskserver", other) for other in ("ns", "agent", "console")} & edges == set()


def test_every_exception_is_still_needed() -> None:
    # Given the edges of each file EXCEPTIONS lets import more than its part
    used = {
        (file_key(edge.source), part_of_module(edge.target))
        for edge in all_edges()
        if edge.target.split(".")[0] == ROOT
    }
    # Then each allowance is still in use (one no longer used must go)
    unused = [
        f"{name} -> {part}"
        for name, parts in EXCEPTIONS.items()
        for part in parts
        if (name, part) not in used
    ]
    assert unused == []


def test_the_console_runs_no_query_of_its_own() -> None:
    # Given the console's third-party imports
    found = [
        edge.where
        for edge in all_edges()
        if part_of_file(edge.source) == "console"
        and file_key(edge.source) not in CONSOLE_DATABASE_EXCEPTIONS
        and third_party(edge.target) in DATABASE
    ]
    # Then none is a database library: its pages read through the NS
    assert found == []


def test_only_the_ns_side_imports_a_database_library() -> None:
    # Given the third-party imports of the parts that never touch a database
    found = [
        edge.where
        for edge in all_edges()
        if part_of_file(edge.source) in WITHOUT_DATABASE and third_party(edge.target) in DATABASE
    ]
    # Then there are none
    assert found == []


def test_the_agent_imports_only_httpx_and_cryptography_besides_the_standard_library() -> None:
    # Given the agent's own import statements
    found = {
        edge.where
        for edge in all_edges()
        if part_of_file(edge.source) == "agent"
        and third_party(edge.target) not in {None, "httpx", "cryptography"}
    }
    # Then each names the standard library, taskfleet, httpx or cryptography
    assert found == set()


# Runs one way of starting a program (an import, a console script, python -m) in a fresh
# interpreter, exactly as far as its imports go ("--help" exits after every module-level
# import), then prints every module loaded.
PROBE = """
import contextlib, importlib, io, json, runpy, sys
kind, target, *argv = sys.argv[1:]
sys.argv = [target, *argv]
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    if kind == "import":
        for name in filter(None, target.split(",")):
            importlib.import_module(name)
    elif kind == "script":
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
print(json.dumps(sorted(sys.modules)))
"""


def loaded(kind: str, target: str, *argv: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, kind, target, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def startup() -> set[str]:
    """What the interpreter loads before any code runs (site, .pth hooks, __main__)."""
    return {name.split(".")[0] for name in loaded("import", "")}


def console_script() -> str:
    script = Path(sys.executable).parent / "taskfleet"
    found = str(script) if script.exists() else shutil.which("taskfleet")
    assert found is not None, "the 'taskfleet' console script is not installed (make test)"
    return found


AGENT_STARTS = {
    "import the agent's cli and service": ("import", "taskfleet.agent.cli,taskfleet.agent.service"),
    "taskfleet agent run --help": ("script", "<console script>", "agent", "run", "--help"),
    "python -m taskfleet agent run --help": ("module", "taskfleet", "agent", "run", "--help"),
    "python -m taskfleet.agent --help": ("module", "taskfleet.agent", "--help"),
}  # fmt: skip
# The agent's modules, and the light entry point that goes straight to its CLI.
AGENT_MODULES = ("taskfleet.agent", "taskfleet.protocol", "taskfleet.errors")
AGENT_ENTRY = frozenset({"taskfleet", "taskfleet.__main__", "taskfleet.entrypoint"})


@pytest.mark.parametrize("start", list(AGENT_STARTS))
def test_a_started_agent_loads_only_the_protocol_its_own_code_httpx_and_cryptography(
    start: str, startup: set[str]
) -> None:
    # Given one way an agent is started
    kind, target, *argv = AGENT_STARTS[start]
    if target == "<console script>":
        target = console_script()
    # When it runs as far as its imports go
    modules = loaded(kind, target, *argv)
    # Then it loaded no third-party package beyond httpx's family and cryptography
    tops = {name.split(".")[0] for name in modules} - startup - {ROOT}
    assert sorted(tops - set(sys.stdlib_module_names) - AGENT_THIRD_PARTY) == []
    # And of taskfleet only the agent, the protocol, the error tree and the entry point
    ours = {name for name in modules if name.split(".")[0] == ROOT}
    others = {n for n in ours - AGENT_ENTRY if not n.startswith(AGENT_MODULES)}
    assert others == set()


def test_a_task_server_loads_no_database_library_and_no_other_component() -> None:
    # When the task server's app and the HTTP server it runs on are imported
    modules = loaded("import", "taskfleet.taskserver.app,taskfleet.server.serve")
    # Then no database library was loaded (server.errors maps no database error)
    assert {name.split(".")[0] for name in modules} & DATABASE == set()
    # And no module of the NS, the console, the agent or storage
    parts = {part_of_module(name) for name in modules if name.split(".")[0] == ROOT}
    assert parts & {"ns", "console", "agent", "storage", "app", "cli"} == set()
