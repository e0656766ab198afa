"""The public faces of the auth/state-res modules, and the purity of what they import."""

from __future__ import annotations

import ast
import pathlib

from homeserver.core import auth_rules, power_levels, state_res

CORE = pathlib.Path(power_levels.__file__).parent
ALLOWED_THIRD_PARTY = {"canonicaljson", "nacl"}


def test_public_api() -> None:
    assert set(auth_rules.__all__) == {
        "AuthError",
        "auth_types_for_event",
        "check_auth",
        "check_auth_events_list",
        "is_valid_user_id",
    }
    assert set(state_res.__all__) == {"AuthChainCalculator", "StateResolutionStore", "resolve_state_groups"}
    assert set(power_levels.__all__) == {
        "CREATE_KEY",
        "NAMED_LEVEL_DEFAULTS",
        "NO_POWER_LEVELS_CREATOR_LEVEL",
        "POWER_LEVELS_KEY",
        "get_creators",
        "get_named_level",
        "get_required_level_for_event",
        "get_user_power_level",
        "get_user_power_level_from_content",
        "parse_power_level",
    }
    for module in (auth_rules, power_levels, state_res):
        for name in module.__all__:
            assert hasattr(module, name)


def test_modules_import_only_core_stdlib_and_crypto() -> None:
    forbidden = {"asyncio", "asyncpg", "socket", "quart", "redis", "httpx", "homeserver.storage"}
    for name in ("auth_rules.py", "power_levels.py", "state_res.py"):
        tree = ast.parse((CORE / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert mod not in forbidden and top not in forbidden, (name, mod)
                if top == "homeserver":
                    assert mod.startswith("homeserver.core"), (name, mod)
                elif top not in ALLOWED_THIRD_PARTY:
                    __import__(top)  # the standard library (or a crash, loudly)
                    assert top in {
                        "__future__",
                        "base64",
                        "binascii",
                        "collections",
                        "typing",
                        "hashlib",
                        "heapq",
                        "math",
                        "re",
                    }, (name, mod)
