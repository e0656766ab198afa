"""Each core module's ``__all__`` names real objects, and the core imports nothing of ours outside it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

MODULES = [
    "encoding",
    "canonical_json",
    "identifiers",
    "hashing",
    "redaction",
    "signing",
    "event_builder",
    "e2e_keys",
    "push_rules",
]
CORE_DIR = Path(__file__).resolve().parents[2] / "homeserver" / "core"


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(f"homeserver.core.{name}")
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.{attr}"
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("path", sorted(CORE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_core_is_pure(path: Path) -> None:
    # core/ may use the standard library and its pure dependencies, and
    # homeserver.core itself; nothing that does I/O or async.
    forbidden = {"asyncio", "asyncpg", "quart", "hypercorn", "redis", "httpx", "aioboto3", "socket"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
            if name.startswith("homeserver"):
                assert name.startswith("homeserver.core"), f"{path.name} imports {name}"
