"""``scripts/floors.py``: install_requires' floors become the pins of ``make test-compat``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest
from packaging.version import Version

from .django_fixtures import ROOT

SCRIPT = ROOT / "scripts" / "floors.py"


def load_floors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("floors", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_setup_cfg(tmp_path: Path, requirements: str) -> Path:
    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text(f"[options]\ninstall_requires =\n{requirements}\n", encoding="utf-8")
    return setup_cfg


def test_each_floor_becomes_a_pin(tmp_path: Path) -> None:
    setup_cfg = write_setup_cfg(
        tmp_path, "    Django>=5.0\n    redis[hiredis] >= 6.4, <9  # why\n\n    asgiref>=3.8"
    )
    pins = load_floors().floors(str(setup_cfg))
    assert pins == ["Django==5.0", "redis==6.4", "asgiref==3.8"]


@pytest.mark.parametrize("requirement", ["Django", "redis<9", "redis==6.4"])
def test_a_requirement_without_a_floor_is_an_error(tmp_path: Path, requirement: str) -> None:
    setup_cfg = write_setup_cfg(tmp_path, f"    {requirement}")
    with pytest.raises(ValueError, match="needs a >= floor"):
        load_floors().floors(str(setup_cfg))


def test_installed_versions_meet_the_declared_floors() -> None:
    output = subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "setup.cfg")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pins = dict(line.split("==") for line in output.splitlines())
    assert set(pins) == {"Django", "redis"}
    for name, floor in pins.items():
        assert Version(version(name)) >= Version(floor), name
