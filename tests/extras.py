# SPDX-License-Identifier: GPL-2.0-or-later
"""The optional extras of pyproject.toml, read from there: the one home of what each needs.

- ``missing(extra)``: the distributions of an extra that are not installed (``[]``: all
  are). tests/conftest.py skips a test marked ``@pytest.mark.extra("NAME")`` with a reason
  naming the extra and how to install it.
- ``python tests/extras.py build-requires``: the build backend's requirements
  (``[build-system] requires``), installed first so the editable build needs no isolation.
- ``python tests/extras.py no-deps EXTRA,...``: the requirements of those extras that are
  installed with ``pip install --no-deps`` (``[tool.recvmap] no-deps``).

The Makefile calls the two commands; nothing here needs more than the standard library, so
it runs in a new virtualenv before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _config() -> dict[str, object]:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)


def build_requires() -> list[str]:
    return list(_config()["build-system"]["requires"])  # type: ignore[index]


def no_deps(extras: list[str]) -> list[str]:
    table = _config().get("tool", {}).get("recvmap", {}).get("no-deps", {})  # type: ignore[union-attr]
    return [req for extra in extras for req in table.get(extra, [])]


def requirements(extra: str) -> list[str]:
    """Every requirement of ``extra``: its pyproject list and its no-deps installs."""
    table = _config()["project"]["optional-dependencies"]  # type: ignore[index]
    if extra not in table:
        raise KeyError(f"pyproject.toml has no extra {extra!r}")
    return [*table[extra], *no_deps([extra])]


def install_hint(extra: str) -> str:
    hint = f"pip install -e '.[{extra}]'"
    for req in no_deps([extra]):
        hint += f" && pip install --no-deps '{req}'"
    return hint + " (make installs every extra)"


def missing(extra: str) -> list[str]:
    """The distributions ``extra`` needs that are not installed."""
    out = []
    for req in requirements(extra):
        m = _NAME.match(req)
        assert m is not None, req
        try:
            metadata.distribution(m[1])
        except metadata.PackageNotFoundError:
            out.append(m[1])
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["build-requires"]:
        print(" ".join(build_requires()))
        return 0
    if argv[:1] == ["no-deps"] and len(argv) == 2:
        print(" ".join(no_deps(argv[1].split(","))))
        return 0
    print("usage: extras.py build-requires | no-deps EXTRA[,EXTRA...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
