"""Modules talk through public names: no ``from pivotal.x import _private`` between modules, and
the modules cleaned up in stage 8 (the report pieces, the RL vector env, the inference
history) reach into no other object's private members."""

from __future__ import annotations

import ast
from pathlib import Path

import pivotal

PACKAGE = Path(pivotal.__file__).resolve().parent

#: Private imports left for their owners to remove (module → names); keep this shrinking.
KNOWN_PRIVATE_IMPORTS: dict[str, set[str]] = {
    "features/indicators/streaming_own.py": {"_finite"},
}

#: Modules that must not touch ``something._private`` of anything but ``self``/``cls``.
NO_PRIVATE_REACH = (
    "backtest/report.py",
    "backtest/report_chart.py",
    "backtest/report_gaps.py",
    "backtest/report_page.py",
    "orchestrator/report/__init__.py",
    "orchestrator/report/common.py",
    "orchestrator/report/panels.py",
    "orchestrator/report/symbols.py",
    "orchestrator/report/tables.py",
    "rl/vector.py",
    "data/inference_history.py",
    "data/inference_payload.py",
    "data/inference_record.py",
)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(source: str) -> set[str]:
    """Names starting with ``_`` imported ``from pivotal...`` (absolute or relative)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            ours = node.level > 0 or (node.module or "").split(".")[0] == "pivotal"
            if ours:
                found.update(a.name for a in node.names if _private(a.name))
    return found


def private_reaches(source: str) -> list[str]:
    """``x._name`` attribute uses where ``x`` is not ``self`` or ``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50, f"found only {len(modules)} modules under {PACKAGE}"
    offenders = {}
    for path in modules:
        key = path.relative_to(PACKAGE).as_posix()
        names = private_imports(path.read_text(encoding="utf-8"))
        names -= KNOWN_PRIVATE_IMPORTS.get(key, set())
        if names:
            offenders[key] = sorted(names)
    assert not offenders, f"private names imported across modules: {offenders}"


def test_cleaned_modules_reach_into_no_private_members() -> None:
    offenders = {}
    for key in NO_PRIVATE_REACH:
        path = PACKAGE / key
        assert path.is_file(), f"{key} is listed but missing; update NO_PRIVATE_REACH"
        found = private_reaches(path.read_text(encoding="utf-8"))
        if found:
            offenders[key] = found
    assert not offenders, f"private members reached: {offenders}"


def test_the_checks_find_what_they_look_for() -> None:
    source = (
        "from pivotal.backtest.report import _table, verdict\n"
        "from .common import _x\n"
        "def f(env):\n    return env._advance(1), self._ok, obj.__class__\n"
    )
    assert private_imports(source) == {"_table", "_x"}
    assert private_reaches(source) == ["line 4: env._advance"]
