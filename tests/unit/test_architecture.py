"""Which package may import which (docs/architecture.md, "Who may import whom"), read from the
source with `ast`, and the promise the API and the sink rely on: they load no faust.

Every `import` counts, also those inside functions (lazy CLI imports) and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import meterflow

SRC = Path(meterflow.__file__).resolve().parent

CORE = {"models", "tariffs", "costing", "ids"}
CONTRACT = {"contract"}
SUPPORT = {"settings", "logs", "metrics", "db", "kafka_admin", "schemas", "_guards"}
"""Shared plumbing the adapters all use: configuration, logs, metrics, the asyncpg helpers and
migrations (`db`), topic creation (`kafka_admin`), schema export, and the version checks on
borrowed library internals (`_guards`)."""
ADAPTERS = {"stream", "sink", "api"}
WIRING = {"cli"}
ROOT = "(meterflow)"  # `from meterflow import __version__`

IO_LIBRARIES = {"asyncio", "aiokafka", "faust", "mode", "aiohttp", "asyncpg"}
STREAM_LIBRARIES = {"faust", "mode"}

MAY_IMPORT: dict[str, set[str]] = {
    # `_guards` is pure (importlib.metadata, inspect): `costing/_trusted.py` checks the pydantic
    # internals it writes at import time, so the core may use it.
    **{name: CORE | {"_guards"} for name in CORE},
    "contract": CORE,
    **{name: CORE | CONTRACT | SUPPORT | {ROOT} for name in SUPPORT},
    **{name: CORE | CONTRACT | SUPPORT | {ROOT} for name in ADAPTERS},
    "cli": CORE | CONTRACT | SUPPORT | ADAPTERS | WIRING | {ROOT},
}


def _part(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py") if relative.parts[0] != "__init__.py" else ROOT


def _imports(path: Path) -> set[str]:
    """Every module name the file imports, absolute (`from meterflow import ids` gives
    `meterflow.ids`; relative imports are not used in this project, and fail the test)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            if node.module == "meterflow":  # `from meterflow import ids, metrics`
                found.update(f"meterflow.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return found


def _meterflow_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "meterflow":
        return None
    if len(parts) == 1 or parts[1] == "__version__":
        return ROOT
    return parts[1]


SOURCES = sorted(p for p in SRC.rglob("*.py"))


def test_every_part_of_the_package_has_a_rule() -> None:
    parts = {_part(path) for path in SOURCES} - {ROOT}
    assert parts <= set(MAY_IMPORT), f"no import rule for {parts - set(MAY_IMPORT)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layers(path: Path) -> None:
    part = _part(path)
    if part == ROOT:
        return
    allowed = MAY_IMPORT[part] | {part}
    wrong = sorted(
        module
        for module in _imports(path)
        if (target := _meterflow_part(module)) is not None and target not in allowed
    )
    assert not wrong, f"{part} may not import {wrong} (docs/architecture.md)"


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if _part(p) in CORE | CONTRACT],
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_core_and_contract_use_no_io_library(path: Path) -> None:
    used = sorted(module for module in _imports(path) if module.split(".")[0] in IO_LIBRARIES)
    assert not used, f"{path.relative_to(SRC)} imports {used}: the core and contract do no I/O"


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    """The checker itself: a core module importing an adapter or faust would be reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from meterflow.sink.rows import Source\nimport faust\n")
    imported = _imports(bad)
    assert {_meterflow_part(m) for m in imported} - MAY_IMPORT["costing"] == {"sink", None}
    assert "faust" in imported


@pytest.mark.parametrize("module", ["meterflow.api.app", "meterflow.sink.service"])
def test_the_api_and_the_sink_load_no_stream_library(module: str) -> None:
    """In a fresh interpreter: importing faust costs the API and the sink start-up time and
    memory, and brings in faust_fixes' patches, for nothing they use."""
    probe = (
        f"import sys, {module}\n"
        f"stream = {sorted(STREAM_LIBRARIES)}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in stream)\n"
        "print(len(sys.modules), loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    count, loaded = out.split(" ", 1)
    assert int(count) > 100  # the import really happened
    assert loaded.strip() == "[]", f"{module} loads {loaded.strip()}"
