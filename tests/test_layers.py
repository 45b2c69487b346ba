"""The layers hold: read from the imports of every module, and proven in a process without Django.

From the bottom up:

- **Protocol** (``broadcast_app.channel``, ``broadcast_app.exceptions``): the public
  contract. The standard library only: neither Django nor redis nor the engine.
- **Engine** (``broadcast_app.backends``): hub, inbox, feeds, one module per backend.
  The standard library, ``redis`` and the protocol; no Django, nothing of the face.
- **Package** (``broadcast_app/__init__.py``): exports the contract. At run time it
  imports the protocol only; the Django-facing names load on first use.
- **Face** (every other module of ``broadcast_app``: settings, checks, app config, views,
  commands, and what they share such as ``sse``): Django. It reaches a channel through
  ``conf.get_channel()`` and decides by ``channel.features``; only ``conf.py`` may
  import the engine, to build channels from settings (today it needs no import at all:
  a BACKEND is a dotted path). Nothing outside the engine tests an object against an
  engine class.
- **Project** (``testproject``): a Django project like a user's, so it imports only the
  public modules of ``PUBLIC_MODULES``. The engine's modules are public for code that
  builds channels by hand without Django (see README), but a Django project configures
  them in ``BROADCAST_CHANNELS`` (a dotted path is configuration, not an import).

``PUBLIC_MODULES`` are those a project's code is documented to import: the package (the
contract and ``get_channel``), the protocol modules, ``conf`` (the settings layer:
aliases, the channels of the process), the stream view and its URLs, signed stream
tokens, the ASGI helpers, the test kit, the events helpers behind ``send_event``, and
the Prometheus metrics.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "broadcast_app"
PROJECT = "testproject"

PROTOCOL = frozenset({"broadcast_app.channel", "broadcast_app.exceptions"})
ENGINE = "broadcast_app.backends"
#: The one face module that may import the engine.
ENGINE_GATEWAY = "broadcast_app.conf"
#: What a Django project may import from ``broadcast_app``; see the module docstring.
PUBLIC_MODULES = frozenset(
    {
        "broadcast_app",
        *PROTOCOL,
        "broadcast_app.conf",
        "broadcast_app.views",
        "broadcast_app.urls",
        "broadcast_app.topic_urls",
        "broadcast_app.tokens",
        "broadcast_app.asgi",
        "broadcast_app.testing",
        "broadcast_app.events",
        "broadcast_app.metrics",
    }
)
#: Third-party packages the engine may import.
ENGINE_DEPENDENCIES = frozenset({"redis"})
#: The engine's modules a process without Django must be able to import.
BACKEND_MODULES = [
    "broadcast_app.backends.memory",
    "broadcast_app.backends.redis",
    "broadcast_app.backends.sharded",
    "broadcast_app.backends.streams",
]
#: Longest module allowed, in lines.
MAX_MODULE_LINES = 400


@dataclass(frozen=True)
class Import:
    """One name an importer binds, and the module it comes from."""

    importer: str
    module: str
    line: int
    #: The name bound in the importer.
    name: str
    #: Inside ``if TYPE_CHECKING:``: for the type checker only, never run.
    typing_only: bool

    def __str__(self) -> str:
        typing = " (for typing)" if self.typing_only else ""
        return f"{self.importer} imports {self.module}{typing}, line {self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = {
    _module_name(path): path for top in (PACKAGE, PROJECT) for path in (ROOT / top).rglob("*.py")
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute_module(importer: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module ``node`` imports from."""
    if not node.level:
        return node.module or ""
    package = importer.split(".")
    if SOURCES[importer].name != "__init__.py":
        package.pop()
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imports_in(importer: str, tree: ast.AST, typing_only: bool = False) -> Iterator[Import]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _imports_in(importer, node, typing_only=True)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                yield Import(importer, alias.name, node.lineno, name, typing_only)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute_module(importer, node)
            for alias in node.names:
                # ``from package import module`` imports the module.
                submodule = f"{module}.{alias.name}"
                source = submodule if submodule in SOURCES else module
                name = alias.asname or alias.name
                yield Import(importer, source, node.lineno, name, typing_only)
        else:
            # Imports inside functions and classes count: they run when called.
            yield from _imports_in(importer, node, typing_only)


def _imports(module: str) -> list[Import]:
    tree = ast.parse(SOURCES[module].read_text(), str(SOURCES[module]))
    return list(_imports_in(module, tree))


IMPORTS = [found for module in sorted(SOURCES) for found in _imports(module)]


def _top(module: str) -> str:
    return module.split(".", maxsplit=1)[0]


def _is_stdlib(module: str) -> bool:
    return _top(module) in sys.stdlib_module_names


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _offending(imports: list[Import], allowed: Callable[[Import], bool]) -> list[str]:
    """One line per offending import statement."""
    return list(dict.fromkeys(str(found) for found in imports if not allowed(found)))


# -- the rules -------------------------------------------------------------------------


def test_the_protocol_imports_only_the_standard_library_and_itself() -> None:
    found = [i for i in IMPORTS if i.importer in PROTOCOL]
    assert found, "no imports read: is PROTOCOL up to date?"
    assert _offending(found, lambda i: _is_stdlib(i.module) or i.module in PROTOCOL) == []


def test_the_engine_imports_no_django_and_nothing_of_the_face() -> None:
    def allowed(found: Import) -> bool:
        module = found.module
        return (
            _is_stdlib(module)
            or _top(module) in ENGINE_DEPENDENCIES
            or module in PROTOCOL
            or _in(module, ENGINE)
        )

    found = [i for i in IMPORTS if _in(i.importer, ENGINE)]
    assert found, "no imports read: is ENGINE up to date?"
    assert _offending(found, allowed) == []


def test_the_package_imports_only_the_protocol_when_it_runs() -> None:
    found = [i for i in IMPORTS if i.importer == PACKAGE and not i.typing_only]
    assert _offending(found, lambda i: _is_stdlib(i.module) or i.module in PROTOCOL) == []


def test_outside_the_engine_only_conf_imports_it() -> None:
    found = [i for i in IMPORTS if not _in(i.importer, ENGINE) and i.importer != ENGINE_GATEWAY]
    assert _offending(found, lambda i: not _in(i.module, ENGINE)) == []


def test_the_project_imports_only_public_modules() -> None:
    found = [i for i in IMPORTS if _in(i.importer, PROJECT) and _in(i.module, PACKAGE)]
    assert _offending(found, lambda i: i.module in PUBLIC_MODULES) == []


def test_nothing_outside_the_engine_tests_objects_against_engine_classes() -> None:
    offences = []
    for module, path in SOURCES.items():
        if _in(module, ENGINE):
            continue
        engine_names = {i.name for i in _imports(module) if _in(i.module, ENGINE)}
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass")
                and len(node.args) == 2
            ):
                continue
            used = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            if used & engine_names:
                offences.append(f"{module} (line {node.lineno}): {ast.unparse(node)}")
    assert offences == []


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in SOURCES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_rules_see_what_they_check() -> None:
    """Guards the reader: a relative import resolves, and a submodule import is seen."""
    resolved = {(i.importer, i.module) for i in IMPORTS}
    assert ("broadcast_app.backends.memory", "broadcast_app.channel") in resolved
    assert ("broadcast_app.apps", "broadcast_app.checks") in resolved
    assert ("broadcast_app.backends.base", "broadcast_app.backends._hub") in resolved


# -- without Django --------------------------------------------------------------------

#: Prefixed to the code run with ``-c``: makes ``import django`` fail as if Django were
#: not installed, and checks that it does.
NO_DJANGO = """
import json, sys

class NoDjango:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "django":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoDjango())
try:
    import django
except ImportError:
    pass
else:
    sys.exit("the finder did not keep Django out")
"""
#: Appended: prints the Django modules loaded.
PRINT_DJANGO_MODULES = """
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "django")))
"""


def run_without_django(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_DJANGO + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("module", BACKEND_MODULES)
def test_a_backend_imports_in_a_process_without_django(module: str) -> None:
    result = run_without_django(f"import {module}\n{PRINT_DJANGO_MODULES}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_the_contract_imports_without_django() -> None:
    code = "import broadcast_app\nbroadcast_app.Message(b'')\nbroadcast_app.ChannelFeatures()\n"
    result = run_without_django(code + PRINT_DJANGO_MODULES)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_without_django_a_django_facing_name_says_what_is_missing() -> None:
    result = run_without_django("import broadcast_app\nbroadcast_app.get_channel\n")
    assert result.returncode == 1
    assert "No module named 'django" in result.stderr
