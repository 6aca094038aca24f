"""The shape of the code, checked on its import graph (grimp reads every import statement,
function-level ones too): imports run one way, with no cycles, and only a package's own
`__init__` imports its views."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile

import grimp
import pytest

from tests.helpers.servers import ROOT


@pytest.fixture(scope="module")
def graph():
    # Imports under `if TYPE_CHECKING:` are annotations only: they never run.
    return grimp.build_graph("authserver", "keyvault", exclude_type_checking_imports=True)


def cycles(graph) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, module):
            return self.edges[module]

    assert cycles(Graph()) == [["a", "b", "c"]]


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_only_a_package_imports_its_own_views(graph):
    views = [module for module in graph.modules if module.rsplit(".", 1)[-1].endswith("views")]
    assert "authserver.accounts.views" in views
    wrong = []
    for module in views:
        package = module.rsplit(".", 1)[0]
        for importer in graph.find_modules_that_directly_import(module):
            if importer != package:
                wrong.append(f"{importer} imports {module}")
    assert wrong == []


PRIVATE_SQLALCHEMY = {"positiontup", "insert_prefetch", "binds", "dispatch", "_make", "make_transient_to_detached",
                      "new_instance", "identity_map", "class_manager"}


def test_the_hot_path_uses_no_sqlalchemy_internals():
    tree = ast.parse((ROOT / "authserver" / "hotpath.py").read_text())
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    private = sorted(name for name in used if name.startswith("_") and not name.startswith("__"))
    assert private == []
    assert sorted(used & PRIVATE_SQLALCHEMY) == []


# What only the CLI, a configured Redis or a test needs; a serving worker pays for each in memory.
NOT_IN_A_WORKER = ("alembic", "flask_migrate", "mako", "requests", "redis")


def test_a_worker_imports_neither_migrations_nor_clients_it_does_not_use():
    program = ("import sys, authserver.server; app = authserver.server.create_app(); "
               f"print(' '.join(name for name in {NOT_IN_A_WORKER!r} if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "AUTHSERVER_LOG_LEVEL": "ERROR",
                               "AUTHSERVER_INSTANCE_PATH": tempfile.mkdtemp(prefix="worker-imports-")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
