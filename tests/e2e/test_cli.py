"""The `homeserver` command as a newcomer runs it: embedded database, restart, CLI subcommands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

V3 = "/_matrix/client/v3"


def homeserver_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "homeserver", *args]


class Process:
    def __init__(self, data_dir: Path, port: int, *extra: str) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env["PARLEY_AUTH__BCRYPT_ROUNDS"] = "4"
        self.proc = subprocess.Popen(
            homeserver_cmd("run", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", *extra),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("server exited:\n" + (self.proc.stdout.read() if self.proc.stdout else ""))
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become ready")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return out


def test_run_embedded_survives_restart(tmp_path: Path) -> None:
    data = tmp_path / "hs"
    port = free_port()
    p = Process(data, port)
    p.wait_ready()
    try:
        with httpx.Client(base_url=p.url, timeout=30) as c:
            r = c.post(f"{V3}/register", json={"username": "alice", "password": "pw",
                                               "auth": {"type": "m.login.dummy"}})
            assert r.status_code == 200, r.text
            token, device = r.json()["access_token"], r.json()["device_id"]
            auth = {"Authorization": f"Bearer {token}"}
            r = c.put(f"{V3}/devices/{device}", headers=auth, json={"display_name": "kept"})
            assert r.status_code == 200
            room = c.post(f"{V3}/createRoom", headers=auth, json={}).json()["room_id"]
            since = c.get(f"{V3}/sync", headers=auth, params={"timeout": 0}).json()["next_batch"]
            r = c.put(f"{V3}/rooms/{room}/typing/@alice:localhost", headers=auth, json={"typing": True})
            assert r.status_code == 200
            body = c.get(f"{V3}/sync", headers=auth, params={"timeout": 5000, "since": since}).json()
            since = body["next_batch"]
    finally:
        out = p.stop()
    assert p.proc.returncode == 0, out
    assert f"listening on http://127.0.0.1:{port}" in out
    assert "register-user" in out
    # First run created the config, the key and the database.
    assert (data / "homeserver.yaml").read_text().startswith("# Parley homeserver configuration.")
    assert (data / "signing.key").read_text().startswith("ed25519 ")
    assert (data / "postgres" / "PG_VERSION").exists()

    p2 = Process(data, port)
    p2.wait_ready()
    try:
        with httpx.Client(base_url=p2.url, timeout=30) as c:
            r = c.get(f"{V3}/account/whoami", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            assert r.json()["device_id"] == device
            r = c.get(f"{V3}/devices/{device}", headers={"Authorization": f"Bearer {token}"})
            assert r.json()["display_name"] == "kept"
            r = c.post(f"{V3}/login", json={"type": "m.login.password", "password": "pw",
                                            "identifier": {"type": "m.id.user", "user": "alice"}})
            assert r.status_code == 200
            # A token from before the restart still sees what happens after it: typing (kept in
            # memory only) and new events.
            auth = {"Authorization": f"Bearer {token}"}
            r = c.put(f"{V3}/rooms/{room}/typing/@alice:localhost", headers=auth, json={"typing": True})
            assert r.status_code == 200
            body = c.get(f"{V3}/sync", headers=auth, params={"timeout": 5000, "since": since}).json()
            ephemeral = body["rooms"]["join"][room]["ephemeral"]["events"]
            assert {"type": "m.typing", "content": {"user_ids": ["@alice:localhost"]}} in ephemeral
            r = c.put(f"{V3}/rooms/{room}/send/m.room.message/t1", headers=auth, json={"msgtype": "m.text",
                                                                                      "body": "after"})
            assert r.status_code == 200
            body = c.get(f"{V3}/sync", headers=auth, params={"timeout": 5000, "since": body["next_batch"]}).json()
            assert [e["content"].get("body") for e in body["rooms"]["join"][room]["timeline"]["events"]] == ["after"]
    finally:
        assert p2.stop() is not None
    assert p2.proc.returncode == 0


def test_register_user_and_migrate_cli(tmp_path: Path) -> None:
    data = tmp_path / "hs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_AUTH__BCRYPT_ROUNDS"] = "4"
    r = subprocess.run(homeserver_cmd("migrate", "--data-dir", str(data)), capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(homeserver_cmd("register-user", "--data-dir", str(data), "--admin", "--password", "s3cret",
                                      "root"), capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "@root:localhost (admin)" in r.stdout
    r = subprocess.run(homeserver_cmd("register-user", "--data-dir", str(data), "--password", "x", "root"),
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "already taken" in r.stderr
    tok = subprocess.run(homeserver_cmd("create-registration-token", "--data-dir", str(data), "--uses", "1"),
                         capture_output=True, text=True, env=env, timeout=120)
    assert tok.returncode == 0, tok.stderr
    token = tok.stdout.strip()

    # A non-loopback listener closes open registration: only the token works.
    port = free_port()
    p = Process(data, port, "--set", "registration.open=false")
    p.wait_ready()
    try:
        with httpx.Client(base_url=p.url, timeout=30) as c:
            r = c.post(f"{V3}/login", json={"type": "m.login.password", "password": "s3cret",
                                            "identifier": {"type": "m.id.user", "user": "root"}})
            assert r.status_code == 200
            r = c.post(f"{V3}/register", json={"username": "eve", "password": "pw",
                                               "auth": {"type": "m.login.dummy"}})
            assert r.status_code == 401
            assert r.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
            r = c.post(f"{V3}/register", json={"username": "eve", "password": "pw",
                                               "auth": {"type": "m.login.registration_token", "token": token}})
            assert r.status_code == 200, r.text
    finally:
        p.stop()


def test_generate_config() -> None:
    r = subprocess.run(homeserver_cmd("generate-config", "--server-name", "example.org"), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    assert 'server_name: "example.org"' in r.stdout
    assert "PARLEY_RATE_LIMITS__ENABLED" in r.stdout


@pytest.mark.parametrize("value,expected", [("127.0.0.1:1", True), ("[::1]:1", True), ("0.0.0.0:1", False)])
def test_registration_open_only_on_loopback(value: str, expected: bool) -> None:
    from homeserver.config import load_config

    assert load_config(None, extra={"listen": [value]}, environ={}).registration_open is expected


def test_sigterm_answers_waiting_long_polls_and_exits(tmp_path: Path) -> None:
    import threading

    port = free_port()
    p = Process(tmp_path / "hs", port)
    p.wait_ready()
    result: dict[str, int] = {}
    with httpx.Client(base_url=p.url, timeout=60) as c:
        r = c.post(f"{V3}/register", json={"username": "w", "password": "pw", "auth": {"type": "m.login.dummy"}})
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        since = c.get(f"{V3}/sync", headers=h).json()["next_batch"]

        def long_poll() -> None:
            result["status"] = c.get(f"{V3}/sync", headers=h, params={"since": since, "timeout": 50_000}).status_code

        t = threading.Thread(target=long_poll)
        t.start()
        time.sleep(1.0)
        started = time.monotonic()
        out = p.stop()
        t.join(30)
    assert p.proc.returncode == 0, out
    assert result.get("status") == 200  # the in-flight request was answered, not cut
    assert time.monotonic() - started < 15
