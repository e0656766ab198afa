"""Accounts and sessions over real HTTP: registration, login, tokens, devices, passwords, profiles."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


async def login(client: httpx.AsyncClient, user: str, password: str = "correct horse", **extra: Any) -> httpx.Response:
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}
    body.update(extra)
    return await client.post(f"{V3}/login", json=body)


async def whoami(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{V3}/account/whoami", headers=auth_header(token))


async def test_register_login_whoami_logout(client: httpx.AsyncClient) -> None:
    reg = await register(client, "alice", initial_device_display_name="laptop")
    assert reg["user_id"] == "@alice:localhost"
    assert reg["device_id"] and reg["access_token"]
    assert "refresh_token" not in reg

    r = await whoami(client, reg["access_token"])
    assert r.status_code == 200
    assert r.json() == {"user_id": "@alice:localhost", "device_id": reg["device_id"], "is_guest": False}

    # Login by localpart and by full user ID.
    r1 = await login(client, "alice")
    r2 = await login(client, "@alice:localhost", device_id="PHONE")
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
    assert r2.json()["device_id"] == "PHONE"
    assert r1.json()["access_token"] != reg["access_token"]

    r = await client.post(f"{V3}/logout", headers=auth_header(reg["access_token"]))
    assert r.status_code == 200
    r = await whoami(client, reg["access_token"])
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    # The other sessions still work.
    assert (await whoami(client, r1.json()["access_token"])).status_code == 200

    # logout/all kills every session.
    r = await client.post(f"{V3}/logout/all", headers=auth_header(r1.json()["access_token"]))
    assert r.status_code == 200
    for token in (r1.json()["access_token"], r2.json()["access_token"]):
        assert (await whoami(client, token)).status_code == 401
    devices = await client.get(f"{V3}/devices", headers=auth_header((await login(client, "alice")).json()["access_token"]))
    assert len(devices.json()["devices"]) == 1


async def test_access_token_query_parameter_and_r0_prefix(client: httpx.AsyncClient) -> None:
    reg = await register(client, "bob")
    r = await client.get("/_matrix/client/r0/account/whoami", params={"access_token": reg["access_token"]})
    assert r.status_code == 200
    assert r.json()["user_id"] == "@bob:localhost"


async def test_wrong_password_and_unknown_user(client: httpx.AsyncClient) -> None:
    await register(client, "carol")
    r = await login(client, "carol", "wrong")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await login(client, "nobody")
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await client.post(f"{V3}/login", json={"type": "m.login.bogus"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_UNKNOWN"


async def test_devices_rename_and_delete_with_uia(client: httpx.AsyncClient) -> None:
    reg = await register(client, "dave")
    other = (await login(client, "dave", device_id="OTHER")).json()
    h = auth_header(reg["access_token"])

    r = await client.put(f"{V3}/devices/OTHER", headers=h, json={"display_name": "Phone"})
    assert r.status_code == 200
    r = await client.get(f"{V3}/devices/OTHER", headers=h)
    assert r.json() == {"device_id": "OTHER", "user_id": "@dave:localhost", "display_name": "Phone",
                        "last_seen_ts": r.json()["last_seen_ts"]}
    r = await client.put(f"{V3}/devices/NOPE", headers=h, json={"display_name": "x"})
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"

    # First attempt: the UIA challenge.
    r = await client.delete(f"{V3}/devices/OTHER", headers=h)
    assert r.status_code == 401
    challenge = r.json()
    assert challenge["flows"] == [{"stages": ["m.login.password"]}]
    assert challenge["session"] and challenge["completed"] == []
    # A wrong password: still 401, with an error.
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dave"},
            "session": challenge["session"]}
    r = await client.request("DELETE", f"{V3}/devices/OTHER", headers=h, json={"auth": {**auth, "password": "bad"}})
    assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
    assert (await whoami(client, other["access_token"])).status_code == 200
    r = await client.request(
        "DELETE", f"{V3}/devices/OTHER", headers=h, json={"auth": {**auth, "password": "correct horse"}}
    )
    assert r.status_code == 200, r.text
    assert (await whoami(client, other["access_token"])).status_code == 401
    ids = [d["device_id"] for d in (await client.get(f"{V3}/devices", headers=h)).json()["devices"]]
    assert ids == [reg["device_id"]]

    # delete_devices in one go, authenticating with password straight away (no session yet).
    a = (await login(client, "dave", device_id="A")).json()
    b = (await login(client, "dave", device_id="B")).json()
    r = await client.post(f"{V3}/delete_devices", headers=h, json={
        "devices": ["A", "B"],
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "dave"},
                 "password": "correct horse"},
    })
    assert r.status_code == 200, r.text
    assert (await whoami(client, a["access_token"])).status_code == 401
    assert (await whoami(client, b["access_token"])).status_code == 401


async def test_uia_session_is_bound_to_its_user(client: httpx.AsyncClient) -> None:
    e = await register(client, "erin")
    f = await register(client, "frank")
    r = await client.post(f"{V3}/delete_devices", headers=auth_header(e["access_token"]), json={"devices": []})
    session = r.json()["session"]
    r = await client.post(f"{V3}/delete_devices", headers=auth_header(f["access_token"]), json={
        "devices": [f["device_id"]],
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "frank"},
                 "password": "correct horse", "session": session},
    })
    assert r.status_code == 403
    assert (await whoami(client, f["access_token"])).status_code == 200


async def test_refresh_token_rotation(client: httpx.AsyncClient) -> None:
    await register(client, "gina")
    first = (await login(client, "gina", refresh_token=True)).json()
    assert first["refresh_token"] and first["expires_in_ms"] == 15 * 60 * 1000
    assert (await whoami(client, first["access_token"])).status_code == 200

    r = await client.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in_ms"] > 0
    # The access token of the old pair is gone.
    assert (await whoami(client, first["access_token"])).status_code == 401
    # Once the new access token is used, the old refresh token is revoked.
    assert (await whoami(client, second["access_token"])).status_code == 200
    r = await client.post(f"{V3}/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    # The new refresh token keeps working, and rotates again.
    r = await client.post(f"{V3}/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 200
    third = r.json()
    r = await client.post(f"{V3}/refresh", json={"refresh_token": second["refresh_token"]})
    # Not yet used: a client that lost the answer may repeat the refresh...
    assert r.status_code == 200
    fourth = r.json()
    # ...and then the earlier answer's tokens are dead.
    assert (await whoami(client, third["access_token"])).status_code == 401
    assert (await whoami(client, fourth["access_token"])).status_code == 200
    r = await client.post(f"{V3}/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401
    r = await client.post(f"{V3}/refresh", json={"refresh_token": "garbage"})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"


async def test_expired_access_token_is_soft_logout(server_factory: Any) -> None:
    srv = await server_factory({"rate_limits.enabled": False, "auth.access_token_lifetime_ms": 400})
    async with srv.client() as client:
        reg = await register(client, "hank", refresh_token=True)
        assert reg["expires_in_ms"] == 400
        assert (await whoami(client, reg["access_token"])).status_code == 200
        await asyncio.sleep(0.6)
        r = await whoami(client, reg["access_token"])
        assert r.status_code == 401
        assert r.json()["errcode"] == "M_UNKNOWN_TOKEN" and r.json()["soft_logout"] is True
        r = await client.post(f"{V3}/refresh", json={"refresh_token": reg["refresh_token"]})
        assert r.status_code == 200
        assert (await whoami(client, r.json()["access_token"])).status_code == 200


async def test_password_change_logs_out_other_devices(client: httpx.AsyncClient) -> None:
    reg = await register(client, "ivy")
    other = (await login(client, "ivy")).json()
    body = {
        "new_password": "new secret",
        "logout_devices": True,
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ivy"},
                 "password": "correct horse"},
    }
    r = await client.post(f"{V3}/account/password", headers=auth_header(reg["access_token"]), json=body)
    assert r.status_code == 200, r.text
    assert (await whoami(client, reg["access_token"])).status_code == 200
    assert (await whoami(client, other["access_token"])).status_code == 401
    assert (await login(client, "ivy", "correct horse")).status_code == 403
    keep = (await login(client, "ivy", "new secret")).json()

    # logout_devices: false keeps the other sessions.
    body = {
        "new_password": "third", "logout_devices": False,
        "auth": {"type": "m.login.password", "user": "ivy", "password": "new secret"},
    }
    r = await client.post(f"{V3}/account/password", headers=auth_header(reg["access_token"]), json=body)
    assert r.status_code == 200, r.text
    assert (await whoami(client, keep["access_token"])).status_code == 200


async def test_deactivated_account_cannot_log_in(client: httpx.AsyncClient) -> None:
    reg = await register(client, "jack")
    r = await client.post(f"{V3}/account/deactivate", headers=auth_header(reg["access_token"]), json={})
    assert r.status_code == 401 and "session" in r.json()
    r = await client.post(f"{V3}/account/deactivate", headers=auth_header(reg["access_token"]), json={
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "jack"},
                 "password": "correct horse", "session": r.json()["session"]},
    })
    assert r.status_code == 200, r.text
    assert r.json() == {"id_server_unbind_result": "no-support"}
    assert (await whoami(client, reg["access_token"])).status_code == 401
    r = await login(client, "jack")
    assert r.status_code == 403
    # The name stays taken.
    r = await client.get(f"{V3}/register/available", params={"username": "jack"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE"


async def test_register_available_and_invalid_names(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{V3}/register/available", params={"username": "kate"})
    assert r.status_code == 200 and r.json() == {"available": True}
    r = await client.get(f"{V3}/register/available", params={"username": "bad name!"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"
    r = await client.post(f"{V3}/register", json={"username": "bad name!", "password": "x",
                                                  "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME"
    r = await client.post(f"{V3}/register", params={"kind": "guest"}, json={})
    assert r.status_code == 403
    # Upper case is folded, as the grammar allows only lower case.
    reg = await register(client, "Kate")
    assert reg["user_id"] == "@kate:localhost"


async def test_register_uia_flow_and_inhibit_login(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{V3}/register", json={"username": "liam", "password": "pw"})
    assert r.status_code == 401
    flows = r.json()
    assert flows["flows"] == [{"stages": ["m.login.dummy"]}]
    r = await client.post(f"{V3}/register", json={
        "username": "liam", "password": "pw", "inhibit_login": True,
        "auth": {"type": "m.login.dummy", "session": flows["session"]},
    })
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "@liam:localhost"
    assert "access_token" not in r.json() and "device_id" not in r.json()
    assert (await login(client, "liam", "pw")).status_code == 200


async def test_registration_tokens(server_factory: Any) -> None:
    srv = await server_factory({"registration.require_token": True})
    await srv.services.account_store.create_registration_token("letmein", 1, None, 0)
    async with srv.client() as client:
        r = await client.get("/_matrix/client/v1/register/m.login.registration_token/validity",
                             params={"token": "letmein"})
        assert r.json() == {"valid": True}
        r = await client.get("/_matrix/client/v1/register/m.login.registration_token/validity",
                             params={"token": "nope"})
        assert r.json() == {"valid": False}
        r = await client.post(f"{V3}/register", json={"username": "mia", "password": "pw"})
        assert r.status_code == 401
        assert r.json()["flows"] == [{"stages": ["m.login.registration_token"]}]
        session = r.json()["session"]
        # Dummy auth is not offered when tokens are required.
        r = await client.post(f"{V3}/register", json={"username": "mia", "password": "pw",
                                                      "auth": {"type": "m.login.dummy", "session": session}})
        assert r.status_code == 401
        r = await client.post(f"{V3}/register", json={"username": "mia", "password": "pw",
                                                      "auth": {"type": "m.login.registration_token",
                                                               "token": "wrong", "session": session}})
        assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await client.post(f"{V3}/register", json={"username": "mia", "password": "pw",
                                                      "auth": {"type": "m.login.registration_token",
                                                               "token": "letmein", "session": session}})
        assert r.status_code == 200, r.text
        # The single use is spent.
        r = await client.get("/_matrix/client/v1/register/m.login.registration_token/validity",
                             params={"token": "letmein"})
        assert r.json() == {"valid": False}
        r = await client.post(f"{V3}/register", json={"username": "noah", "password": "pw",
                                                      "auth": {"type": "m.login.registration_token",
                                                               "token": "letmein"}})
        assert r.status_code == 401


async def test_concurrent_registrations(client: httpx.AsyncClient) -> None:
    results = await asyncio.gather(*(
        client.post(f"{V3}/register", json={"username": f"user{i}", "password": "pw",
                                            "auth": {"type": "m.login.dummy"}})
        for i in range(50)
    ))
    assert [r.status_code for r in results] == [200] * 50
    assert len({r.json()["user_id"] for r in results}) == 50

    same = await asyncio.gather(*(
        client.post(f"{V3}/register", json={"username": "twin", "password": "pw",
                                            "auth": {"type": "m.login.dummy"}})
        for _ in range(2)
    ))
    codes = sorted(r.status_code for r in same)
    assert codes == [200, 400]
    loser = next(r for r in same if r.status_code == 400)
    assert loser.json()["errcode"] == "M_USER_IN_USE"


async def test_failed_login_rate_limit(server_factory: Any) -> None:
    srv = await server_factory()
    async with srv.client() as client:
        await register(client, "olga")
        await register(client, "pete")
        for _ in range(5):
            r = await login(client, "olga", "wrong")
            assert r.status_code == 403
        r = await login(client, "olga", "wrong")
        assert r.status_code == 429
        body = r.json()
        assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["retry_after_ms"] > 0
        assert int(r.headers["Retry-After"]) >= 1
        # Even the right password is refused while limited.
        assert (await login(client, "olga")).status_code == 429
    # Another account from another client address is unaffected.
    other_address = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with srv.client(transport=other_address) as client2:
        assert (await login(client2, "pete")).status_code == 200
        assert (await login(client2, "olga")).status_code == 429  # the account is limited everywhere


async def test_failed_login_rate_limit_per_address(server_factory: Any) -> None:
    srv = await server_factory()
    async with srv.client() as client:
        for i in range(5):
            assert (await login(client, f"ghost{i}", "wrong")).status_code == 403
        r = await login(client, "ghost9", "wrong")
        assert r.status_code == 429 and r.json()["errcode"] == "M_LIMIT_EXCEEDED"


async def test_profile(client: httpx.AsyncClient) -> None:
    reg = await register(client, "quinn")
    other = await register(client, "rita")
    r = await client.get(f"{V3}/profile/@quinn:localhost")
    assert r.json() == {"displayname": "quinn"}
    h = auth_header(reg["access_token"])
    r = await client.put(f"{V3}/profile/@quinn:localhost/displayname", headers=h, json={"displayname": "Quinn Q"})
    assert r.status_code == 200
    r = await client.put(f"{V3}/profile/@quinn:localhost/avatar_url", headers=h,
                         json={"avatar_url": "mxc://localhost/abc"})
    assert r.status_code == 200
    r = await client.get(f"{V3}/profile/@quinn:localhost")
    assert r.json() == {"displayname": "Quinn Q", "avatar_url": "mxc://localhost/abc"}
    r = await client.get(f"{V3}/profile/@quinn:localhost/displayname")
    assert r.json() == {"displayname": "Quinn Q"}
    r = await client.put(f"{V3}/profile/@quinn:localhost/displayname",
                         headers=auth_header(other["access_token"]), json={"displayname": "hijack"})
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
    r = await client.put(f"{V3}/profile/@quinn:localhost/displayname", headers=h, json={"displayname": 5})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await client.get(f"{V3}/profile/@nobody:localhost")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
