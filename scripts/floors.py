"""Print the lowest versions setup.cfg's install_requires allows, as pip constraints.

``python scripts/floors.py setup.cfg > floors.txt`` turns ``Django>=5.0`` into
``Django==5.0``; ``make test-compat`` installs with ``-c floors.txt`` so that the suite
runs on the floors the package declares, and a floor raised or lowered there is tested
without a second list to keep in step. A requirement without a ``>=`` floor is an error.
"""

from __future__ import annotations

import configparser
import re
import sys

_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)")


def floors(setup_cfg: str) -> list[str]:
    """Return ``name==version`` for each requirement of install_requires.

    Raises:
        ValueError: a requirement has no ``>=`` floor.
    """
    config = configparser.ConfigParser()
    config.read(setup_cfg, encoding="utf-8")
    pins = []
    for line in config["options"]["install_requires"].splitlines():
        requirement = line.split("#", 1)[0].strip()
        if not requirement:
            continue
        match = _FLOOR.match(requirement)
        if match is None:
            raise ValueError(f"install_requires needs a >= floor for {requirement!r}.")
        name, _, version = match.groups()
        pins.append(f"{name}=={version}")
    return pins


if __name__ == "__main__":
    print("\n".join(floors(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg")))
