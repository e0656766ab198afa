"""Configuration precedence and the environment-variable naming rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import ConfigError, load_config


def test_precedence_file_env_set(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server_name: file.example\nrate_limits:\n  enabled: true\ndatabase:\n  pool_max: 7\n")
    c = load_config(f, environ={})
    assert c.server_name == "file.example" and c.get("rate_limits.enabled") is True
    assert c.get("database.pool_max") == 7 and c.get("database.pool_min") == 2  # defaults kept
    c = load_config(f, environ={"PARLEY_RATE_LIMITS__ENABLED": "false", "PARLEY_SERVER_NAME": "env.example"})
    assert c.get("rate_limits.enabled") is False and c.server_name == "env.example"
    c = load_config(f, environ={"PARLEY_SERVER_NAME": "env.example"}, sets=["server_name=cli.example",
                                                                            "rate_limits.messages_per_user.burst=99"])
    assert c.server_name == "cli.example"
    assert c.rate_rule("messages_per_user").burst == 99


def test_env_nested_and_lists() -> None:
    c = load_config(None, environ={"PARLEY_LISTEN": "[127.0.0.1:1, '[::1]:2']",
                                   "PARLEY_DATABASE__URL": "postgresql://x/y"})
    assert c.listen == [("127.0.0.1", 1), ("::1", 2)]
    assert c.get("database.url") == "postgresql://x/y"


def test_bad_values() -> None:
    with pytest.raises(ConfigError):
        load_config(None, sets=["novalue"], environ={})
    with pytest.raises(ConfigError):
        load_config(None, extra={"listen": ["nohostport"]}, environ={})
