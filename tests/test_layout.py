"""The layout holds: data flows down the layers, each decision has one home, modules stay small.

These read the source, so a change that quietly breaks the architecture fails here, with the
module and the line named.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "convertd"
# Lowest first: a module may import from its own layer or a lower one, never a higher one.
LAYERS = [
    (
        "foundation",
        [
            "convertd",
            "convertd.errors",
            "convertd.clock",
            "convertd.config",
            "convertd.files",
            "convertd.procs",
            "convertd.periodic",
            "convertd.memory",
            "convertd.sdnotify",
            "convertd.loops",  # the event loop the daemon runs on (uvloop or asyncio's)
            "convertd.logs",  # where log lines go, and the request and job they are about
            "convertd.restrictions",
            "convertd.signing",
            "convertd.changes",
            "convertd.fetch",  # the network policy for everything the daemon downloads
            "convertd.forward",  # the same, one hop at a time, for a browser
            "convertd.drops.rules",  # what a watch rule is, read with the config
            "convertd.presets",  # what a preset is, and the config's [[preset]] tables
            "convertd.metrics",  # what /metrics shows; recorded from every layer above
        ],
    ),
    ("store, office and browser", ["convertd.store", "convertd.office", "convertd.browser"]),
    ("converters", ["convertd.converters"]),
    (
        "worker, task engine, drops and retention",
        [
            "convertd.worker",
            "convertd.tasks",
            "convertd.drops",
            "convertd.retention",
            "convertd.watchdog",
            "convertd.cluster",  # nodes, the leader, the relay: several nodes on one database
        ],
    ),
    ("api and events", ["convertd.api", "convertd.events"]),
    ("app and server", ["convertd.app", "convertd.leading", "convertd.server"]),
    ("cli", ["convertd.cli", "convertd.__main__"]),
]
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best = -1, ""
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best[1]):
                best = rank, prefix
    assert best[0] >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best[0]


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """convertd modules this file imports (at any depth of the file), with the line."""
    found: list[tuple[str, int]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("convertd")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("convertd"):
                continue
            known = modules()
            for alias in node.names:
                # `from convertd.store import jobs` imports the module convertd.store.jobs.
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _ in imports_of(path, name) if target != name}
        for name, path in modules().items()
    }


def upward_imports() -> list[str]:
    wrong = []
    for name, path in modules().items():
        if name == "convertd.office.helper":
            continue  # run by the system Python, imports nothing of ours
        for target, line in imports_of(path, name):
            if layer_of(target) > layer_of(name):
                wrong.append(
                    f"{path.relative_to(ROOT)}:{line}: {name} ({LAYERS[layer_of(name)][0]}) "
                    f"imports {target} ({LAYERS[layer_of(target)][0]})"
                )
    return wrong


def test_layer_table_can_see_an_upward_import() -> None:
    assert layer_of("convertd.store.jobs") < layer_of("convertd.api.v1.jobs")
    assert layer_of("convertd.converters.run") > layer_of("convertd.office.pool")


def test_data_flows_down_the_layers() -> None:
    assert upward_imports() == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_loops() -> None:
    graph = import_graph()
    # A package's __init__ is imported with any of its modules; it is not a loop by itself.
    graph = {k: {t for t in v if not k.startswith(t + ".")} for k, v in graph.items()}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    lines = len(modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by what it owns"


def source_lines(pattern: str, *, outside: tuple[str, ...]) -> list[str]:
    regex = re.compile(pattern)
    hits = []
    for name, path in modules().items():
        if any(name == o or name.startswith(o + ".") for o in outside):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return hits


def test_only_config_reads_the_environment() -> None:
    assert (
        source_lines(r"\bos\.environ\b|\bgetenv\(|\benviron\[", outside=("convertd.config",)) == []
    )


def test_sql_lives_only_in_the_store() -> None:
    sql = r"\b(SELECT .+ FROM|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b"
    assert source_lines(sql, outside=("convertd.store",)) == []


def test_importing_convertd_starts_no_threads() -> None:
    # Threads (conversion work, the database writer) belong to a running app and stop with it.
    code = (
        "import importlib, pkgutil, threading, convertd\n"
        "for m in pkgutil.walk_packages(convertd.__path__, 'convertd.'):\n"
        "    if m.name not in ('convertd.office.helper', 'convertd.__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print(threading.active_count())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
