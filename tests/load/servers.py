"""Start and stop the homeservers under test, each on its own PostgreSQL, loopback only.

- PostgreSQL comes from the ``pgserver`` package (embedded binaries; works as root by switching to
  its own system user), one cluster per server, default settings for both.
- Synapse is installed from PyPI into a cache virtualenv on first use (``matrix-synapse[postgres]``),
  configured with open registration, presence on and every rate limit raised.
- Parley is started to its CLI contract: ``homeserver run --data-dir DIR --listen 127.0.0.1:PORT
  --set rate_limits.enabled=false [--set database.url=...]``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(os.environ.get("PARLEY_LOAD_CACHE", Path.home() / ".cache" / "parley-load"))
SYNAPSE_SPEC = os.environ.get("PARLEY_LOAD_SYNAPSE_SPEC", "matrix-synapse[postgres]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not come up in {timeout:.0f}s: {last}")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class Postgres:
    data_dir: Path
    server: Any = None

    def start(self) -> Postgres:
        import pgserver  # embedded PostgreSQL; a project dependency

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return self

    @property
    def pid(self) -> int:
        return int(self.server.get_pid())

    @property
    def socket_dir(self) -> str:
        return str(self.server.get_postmaster_info().socket_dir)

    def create_database(self, name: str) -> str:
        """Create ``name`` (UTF8, C collation as Synapse requires); return a libpq URI."""
        out = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
        if "(1 row)" not in out:
            self.server.psql(f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' "
                             "TEMPLATE template0;")
        return self.server.get_uri(name)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


# ---------------------------------------------------------------------------------------------
# Servers


@dataclass
class RunningServer:
    name: str
    url: str
    proc: subprocess.Popen[Any]
    postgres: Postgres | None
    register: str = "dummy"
    shared_secret: str | None = None
    version: str = ""
    log_path: Path | None = None
    extra_pids: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        """Root pids whose process trees make up this server (server + its PostgreSQL)."""
        out = [self.proc.pid, *self.extra_pids]
        if self.postgres is not None:
            out.append(self.postgres.pid)
        return out

    def stop(self) -> None:
        stop_process(self.proc)
        if self.postgres is not None:
            self.postgres.stop()


def ensure_synapse_venv(cache: Path = DEFAULT_CACHE, python: str | None = None) -> Path:
    """Return the python of a venv with matrix-synapse, creating it on first use."""
    venv = cache / "synapse-venv"
    py = venv / "bin" / "python"
    if py.exists():
        probe = subprocess.run([str(py), "-c", "import synapse, psycopg2"], capture_output=True, check=False)
        if probe.returncode == 0:
            return py
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([python or sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", SYNAPSE_SPEC], check=True)
    return py


def _yaml(obj: Any, indent: int = 0) -> str:
    """Tiny YAML emitter for the config below (JSON is valid YAML, but readable files help)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        lines = []
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n{_yaml(v, indent + 1)}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
        return "\n".join(lines)
    if isinstance(obj, list):
        lines = []
        for v in obj:
            if isinstance(v, dict):
                inner = _yaml(v, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {_scalar(v)}")
        return "\n".join(lines)
    return pad + _scalar(obj)


def _scalar(v: Any) -> str:
    import json
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return json.dumps(str(v))


HIGH = {"per_second": 100000, "burst_count": 100000}


def synapse_config(data: Path, port: int, pg_socket: str, db: str, secret: str,
                   bcrypt_rounds: int = 12, log_level: str = "WARNING") -> dict[str, Any]:
    return {
        "server_name": "load.localhost",
        "pid_file": str(data / "homeserver.pid"),
        "listeners": [{"port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                       "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
        "database": {"name": "psycopg2", "args": {"user": "postgres", "database": db, "host": pg_socket,
                                                  "cp_min": 5, "cp_max": 10}},
        "log_config": str(data / "log.yaml"),
        "media_store_path": str(data / "media"),
        "signing_key_path": str(data / "signing.key"),
        "registration_shared_secret": secret,
        "macaroon_secret_key": secrets.token_hex(16),
        "form_secret": secrets.token_hex(16),
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": True},
        "bcrypt_rounds": bcrypt_rounds,
        "rc_message": HIGH,
        "rc_registration": HIGH,
        "rc_registration_token_validity": HIGH,
        "rc_login": {"address": HIGH, "account": HIGH, "failed_attempts": HIGH},
        "rc_admin_redaction": HIGH,
        "rc_joins": {"local": HIGH, "remote": HIGH},
        "rc_joins_per_room": HIGH,
        "rc_3pid_validation": HIGH,
        "rc_invites": {"per_room": HIGH, "per_user": HIGH, "per_issuer": HIGH},
        "rc_third_party_invite": HIGH,
        "rc_room_creation": HIGH,
        "rc_presence": {"per_user": HIGH},
        "rc_delayed_event_mgmt": HIGH,
        "rc_reports": HIGH,
        "federation_rr_transactions_per_room_per_second": 10000,
    }


def start_synapse(work: Path, *, port: int | None = None, bcrypt_rounds: int = 12,
                  cache: Path = DEFAULT_CACHE, startup_timeout: float = 180) -> RunningServer:
    py = ensure_synapse_venv(cache)
    data = work / "synapse"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    pg = Postgres(work / "synapse-pg").start()
    try:
        pg.create_database("synapse")
        port = port or free_port()
        secret = secrets.token_hex(16)
        cfg = synapse_config(data, port, pg.socket_dir, "synapse", secret, bcrypt_rounds)
        (data / "homeserver.yaml").write_text(_yaml(cfg) + "\n")
        (data / "log.yaml").write_text(
            "version: 1\nformatters:\n  f:\n    format: '%(asctime)s %(name)s %(levelname)s %(message)s'\n"
            f"handlers:\n  file:\n    class: logging.FileHandler\n    filename: {data / 'homeserver.log'}\n"
            "    formatter: f\nroot:\n  level: WARNING\n  handlers: [file]\ndisable_existing_loggers: false\n")
        subprocess.run([str(py), "-m", "synapse.app.homeserver", "-c", str(data / "homeserver.yaml"),
                        "--generate-keys"], check=True, capture_output=True, cwd=data)
        log = open(data / "stdout.log", "wb")  # noqa: SIM115 - owned by the child for its life
        proc = subprocess.Popen([str(py), "-m", "synapse.app.homeserver", "-c", str(data / "homeserver.yaml")],
                                stdout=log, stderr=subprocess.STDOUT, cwd=data)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/_matrix/client/versions", startup_timeout, proc)
        except Exception:
            stop_process(proc)
            raise
        version = subprocess.run([str(py), "-c", "import synapse; print(synapse.__version__)"],
                                 capture_output=True, text=True, check=False).stdout.strip()
        return RunningServer("synapse", url, proc, pg, register="dummy", shared_secret=secret,
                             version=version, log_path=data / "stdout.log")
    except Exception:
        pg.stop()
        raise


def parley_command(data_dir: Path, port: int, db_url: str | None, extra_set: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "homeserver", "run", "--data-dir", str(data_dir),
           "--listen", f"127.0.0.1:{port}", "--set", "rate_limits.enabled=false"]
    if db_url:
        cmd += ["--set", f"database.url={db_url}"]
    for s in extra_set:
        cmd += ["--set", s]
    return cmd


def start_parley(work: Path, *, port: int | None = None, own_postgres: bool = True,
                 extra_set: list[str] | None = None, startup_timeout: float = 120) -> RunningServer:
    """Start our homeserver from the repository checkout this file lives in."""
    data = work / "parley"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    pg = Postgres(work / "parley-pg").start() if own_postgres else None
    try:
        db_url = pg.create_database("parley") if pg else None
        port = port or free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        log = open(data / "stdout.log", "wb")  # noqa: SIM115 - owned by the child for its life
        proc = subprocess.Popen(parley_command(data, port, db_url, extra_set or []), stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http(url + "/_matrix/client/versions", startup_timeout, proc)
        except Exception:
            stop_process(proc)
            raise
        extra: list[int] = []
        if pg is None:  # embedded PostgreSQL: its postmaster is not our child; find it by pid file
            for pidfile in data.rglob("postmaster.pid"):
                try:
                    extra.append(int(pidfile.read_text().split()[0]))
                except (OSError, ValueError, IndexError):
                    pass
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False).stdout.strip()
        return RunningServer("parley", url, proc, pg, register="dummy", version=rev or "?",
                             log_path=data / "stdout.log", extra_pids=extra)
    except Exception:
        if pg:
            pg.stop()
        raise


def start_server(name: str, work: Path, **kw: Any) -> RunningServer:
    if name == "synapse":
        return start_synapse(work, **{k: v for k, v in kw.items() if k in ("port", "bcrypt_rounds", "cache")})
    if name == "parley":
        return start_parley(work, **{k: v for k, v in kw.items() if k in ("port", "own_postgres", "extra_set")})
    raise ValueError(f"unknown server {name!r}")
