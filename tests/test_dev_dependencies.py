"""The shipped package needs no dev-only package: test oracles that use backtesting.py (and
anything importing pytest or hypothesis) live under ``tests/``, not under ``src/pivotal``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pivotal

#: The ``dev``/``bench`` extras of pyproject.toml that the package must not import.
DEV_ONLY = frozenset({"backtesting", "pytest", "hypothesis", "vectorbt", "ruff", "importlinter"})
PACKAGE = Path(pivotal.__file__).resolve().parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_package_imports_no_dev_only_package() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50, f"found only {len(modules)} modules under {PACKAGE}"
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imported_roots(path) & DEV_ONLY)
        for path in modules
        if _imported_roots(path) & DEV_ONLY
    }
    assert not offenders, f"modules of the shipped package import dev-only packages: {offenders}"


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from backtesting.lib import crossover\n    import pytest\n")
    assert _imported_roots(module) == {"backtesting", "pytest"}


def test_the_backtesting_oracle_is_a_test_helper() -> None:
    from oracles import backtesting_oracle

    assert Path(backtesting_oracle.__file__).resolve().parent.parent == Path(__file__).parent
    with pytest.raises(ModuleNotFoundError):
        __import__("pivotal.testing.backtesting_oracle")
