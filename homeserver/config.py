"""Configuration: defaults, the YAML file, environment variables and --set overrides.

Precedence, lowest first: built-in defaults, the config file, environment
variables, command-line options. Every key is a dotted path into a nested
mapping (``rate_limits.enabled``). The environment variable for a key is
``PARLEY_`` followed by the path in upper case with ``__`` between levels:
``rate_limits.enabled`` is ``PARLEY_RATE_LIMITS__ENABLED``. Values from the
environment and from ``--set`` are parsed as YAML scalars, so ``false``, ``10``
and ``[a, b]`` mean what they look like.
"""

from __future__ import annotations

import copy
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "PARLEY_"

DEFAULTS: dict[str, Any] = {
    "server_name": "localhost",
    "public_baseurl": None,
    "listen": ["127.0.0.1:8008"],
    "signing_key_path": "signing.key",
    "database": {"url": None, "pool_min": 2, "pool_max": 20, "embedded_dir": "postgres"},
    "redis": {"url": None},
    "media": {
        "store": "filesystem",
        "path": "media",
        "max_upload_size": 10 * 1024 * 1024,
        "max_image_pixels": 32_000_000,
        "freeze_unauthenticated": True,
        "s3": {
            "bucket": None,
            "prefix": "",
            "endpoint_url": None,
            "region": None,
            "access_key_id": None,
            "secret_access_key": None,
        },
    },
    "registration": {
        # null: open only while every listener is on a loopback address.
        "open": None,
        # true: a registration token (see `homeserver create-registration-token`) is needed.
        "require_token": False,
    },
    "auth": {
        "bcrypt_rounds": 12,
        # Access tokens issued together with a refresh token expire after this long.
        "access_token_lifetime_ms": 15 * 60 * 1000,
        "refresh_token_lifetime_ms": 7 * 24 * 3600 * 1000,
        "uia_session_lifetime_ms": 15 * 60 * 1000,
    },
    "rate_limits": {
        "enabled": True,
        # burst: how many at once; period_s: the time in which `burst` fully refills.
        "login_failures_per_account": {"burst": 5, "period_s": 900},
        "login_failures_per_address": {"burst": 5, "period_s": 900},
        "registration_per_address": {"burst": 20, "period_s": 3600},
        "messages_per_user": {"burst": 10, "period_s": 1},
        "invites_per_user": {"burst": 50, "period_s": 86400},
        "uploads_per_user": {"burst": 20, "period_s": 60},
    },
    "limits": {
        "max_json_body_bytes": 1024 * 1024,
        "max_message_body_chars": 10_000,
    },
    "http": {
        # The event loop: uvloop (libuv) where installed, else asyncio's own.
        "uvloop": True,
        "max_sync_timeout_ms": 600_000,
        "keep_alive_timeout_s": 75,
        "backlog": 2048,
        "shutdown_timeout_s": 10,
        "cors_allow_origin": "*",
        # Streaming sync (spec/websocket-sync.md): WebSocket and SSE (MSC2108).
        "websocket_compression": False,
        "websocket_ping_interval_s": 30,
        "websocket_auth_timeout_s": 10,
        "websocket_max_strikes": 20,
        "websocket_max_inflight_requests": 16,
        "sse_heartbeat_interval_s": 5,
        "sse_min_heartbeat_interval_s": 1,
        "stream_wait_ms": 30_000,
    },
    "logging": {"level": "INFO", "format": "text"},
    "presence": {"enabled": True},
    "user_directory": {"search_all_users": False},
    "push": {
        # The spec requires HTTPS push gateways; plain HTTP only for tests and local gateways.
        "allow_http_gateways": False,
        # A failed poke is retried after retry_base_s, doubling, up to max_attempts tries.
        "retry_base_s": 1.0,
        "max_attempts": 6,
    },
}


class ConfigError(Exception):
    pass


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _known_paths(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Map ENV-style names (RATE_LIMITS__ENABLED) to dotted paths for every default key."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out[path.replace(".", "__").upper()] = path
        if isinstance(value, Mapping):
            out.update(_known_paths(value, path + "."))
    return out


def parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    known = _known_paths(DEFAULTS)
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        path = known.get(key) or key.lower().replace("__", ".")
        _set_path(tree, path, parse_scalar(raw))
    return tree


def load_config(
    config_file: Path | None = None,
    *,
    sets: list[str] | tuple[str, ...] = (),
    environ: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Config:
    tree = copy.deepcopy(DEFAULTS)
    if config_file is not None and config_file.exists():
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{config_file}: the top level must be a mapping")
        tree = _merge(tree, loaded)
    tree = _merge(tree, env_overrides(os.environ if environ is None else environ))
    if extra:
        tree = _merge(tree, extra)
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        _set_path(tree, key.strip(), parse_scalar(raw))
    return Config(tree, data_dir=data_dir or Path("homeserver-data"))


def parse_listen(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address must be HOST:PORT, got {addr!r}")
    host = host.strip("[]")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class RateLimitRule:
    burst: int
    period_s: float


class Config:
    """The merged configuration tree with typed accessors for what code reads often."""

    def __init__(self, tree: dict[str, Any], data_dir: Path) -> None:
        self.tree = tree
        self.data_dir = data_dir
        self.server_name: str = str(tree["server_name"])
        listen = tree["listen"]
        if isinstance(listen, str):
            listen = [listen]
        self.listen: list[tuple[str, int]] = [parse_listen(a) for a in listen]
        self.listen_strings: list[str] = list(listen)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.tree
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def path(self, dotted: str) -> Path:
        """A config value naming a file or folder; relative paths are inside the data directory."""
        p = Path(str(self.get(dotted)))
        return p if p.is_absolute() else self.data_dir / p

    @property
    def registration_open(self) -> bool:
        configured = self.get("registration.open")
        if configured is not None:
            return bool(configured)
        return all(is_loopback(host) for host, _ in self.listen)

    def rate_rule(self, name: str) -> RateLimitRule:
        raw = self.get(f"rate_limits.{name}") or {}
        return RateLimitRule(burst=int(raw.get("burst", 1)), period_s=float(raw.get("period_s", 1)))

    @property
    def public_baseurl(self) -> str:
        configured = self.get("public_baseurl")
        if configured:
            return str(configured).rstrip("/")
        host, port = self.listen[0]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


CONFIG_TEMPLATE = """\
# Parley homeserver configuration.
#
# Every key can also be set from the environment: PARLEY_ followed by the key
# path in upper case with "__" between levels (rate_limits.enabled ->
# PARLEY_RATE_LIMITS__ENABLED=false), or on the command line with
# `--set rate_limits.enabled=false`. Command line beats environment beats this file.

# The domain part of user IDs (@alice:{server_name}). Cannot change once users exist.
server_name: "{server_name}"

# Where clients reach this server; derived from the first listener when empty.
public_baseurl: null

# HOST:PORT pairs to listen on. Registration is open by default only while all are loopback.
listen:
{listen}

# The ed25519 key this server signs events and federation requests with (relative to the data dir).
signing_key_path: signing.key

database:
  # null: an embedded PostgreSQL in <data dir>/postgres. Otherwise a postgresql:// URL.
  url: null
  pool_min: 2
  pool_max: 20

redis:
  # null: single process, in-process bus and rate limiter. Set to redis://... for several workers.
  url: null

media:
  store: filesystem        # filesystem | s3
  path: media              # for the filesystem store, relative to the data dir
  max_upload_size: 10485760
  # Images that would decode to more pixels than this are refused at upload (decompression bombs).
  max_image_pixels: 32000000
  # true: media uploaded from now on is served only by the authenticated /_matrix/client/v1/media
  # endpoints; the deprecated /_matrix/media/v3/download|thumbnail answer 404 for it (spec v1.11+).
  freeze_unauthenticated: true
  # s3: {{bucket: ..., prefix: ..., endpoint_url: ..., region: ..., access_key_id: ..., secret_access_key: ...}}
  # (without keys, the standard AWS environment / shared config / instance role is used)

registration:
  # null: open while every listener is loopback; true/false to force.
  open: null
  # true: registering needs a token made with `homeserver create-registration-token`.
  require_token: false

auth:
  bcrypt_rounds: 12
  access_token_lifetime_ms: 900000      # for clients that asked for a refresh token
  refresh_token_lifetime_ms: 604800000

rate_limits:
  enabled: true
  # Each rule: `burst` actions at once, refilling completely over `period_s` seconds.
  login_failures_per_account: {{burst: 5, period_s: 900}}
  login_failures_per_address: {{burst: 5, period_s: 900}}
  registration_per_address: {{burst: 20, period_s: 3600}}
  messages_per_user: {{burst: 10, period_s: 1}}
  invites_per_user: {{burst: 50, period_s: 86400}}
  uploads_per_user: {{burst: 20, period_s: 60}}

logging:
  level: INFO
  format: text             # text | json
"""


def render_config_template(server_name: str, listen: list[str]) -> str:
    listen_lines = "\n".join(f'  - "{a}"' for a in listen)
    return CONFIG_TEMPLATE.format(server_name=server_name, listen=listen_lines)
