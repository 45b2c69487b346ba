"""The public API is documented from ``broadcast_app`` alone.

Every exported name, and every public method and property of an exported class, has a
docstring (its own, or the one it implements from a protocol); the documentation's
examples import only public modules, or a backend's module to build a channel by hand.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import broadcast_app

from .test_layers import BACKEND_MODULES, PUBLIC_MODULES, ROOT

#: Special methods that are part of the API: context managers and iteration.
API_DUNDERS = frozenset(
    {"__enter__", "__exit__", "__aenter__", "__aexit__", "__iter__", "__aiter__"}
)
DOCUMENTS = sorted({*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md")})
IMPORT = re.compile(r"^\s*(?:from|import)\s+(broadcast_app[\w.]*)", re.MULTILINE)


def _members(cls: type) -> Iterator[tuple[str, object]]:
    """The public methods and properties of ``cls``, inherited ones included."""
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") and name not in API_DUNDERS:
            continue
        if inspect.isfunction(value) or inspect.ismethod(value) or isinstance(value, property):
            yield name, value


def test_every_exported_name_exists() -> None:
    missing = [name for name in broadcast_app.__all__ if not hasattr(broadcast_app, name)]
    assert missing == []


@pytest.mark.parametrize("name", broadcast_app.__all__)
def test_every_exported_name_is_documented(name: str) -> None:
    value = getattr(broadcast_app, name)
    if not (inspect.isclass(value) or inspect.isfunction(value)):
        return  # A constant or an alias, documented where it is defined.
    own_doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
    assert own_doc, f"{name} has no docstring"
    if inspect.isclass(value):
        undocumented = [member for member, obj in _members(value) if not inspect.getdoc(obj)]
        assert undocumented == [], f"{name} has undocumented members"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_the_docs_import_only_public_modules(document: Path) -> None:
    allowed = PUBLIC_MODULES | set(BACKEND_MODULES)
    imported = IMPORT.findall(document.read_text())
    assert sorted(set(imported) - allowed) == []
