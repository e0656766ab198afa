"""Error shapes, discovery, CORS, health and metrics over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"


async def test_error_shapes(client: httpx.AsyncClient) -> None:
    r = await client.get("/_matrix/client/v3/no/such/thing")
    assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
    r = await client.delete(f"{V3}/login")
    assert r.status_code == 405 and r.json()["errcode"] == "M_UNRECOGNIZED"
    r = await client.post(f"{V3}/login", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = await client.post(f"{V3}/login", content=b"[1, 2]")
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = await client.post(f"{V3}/login", content=b'{"a": NaN}')
    assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
    r = await client.post(f"{V3}/login", json={"type": "m.login.password", "password": 12,
                                               "identifier": {"type": "m.id.user", "user": "x"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    assert "password" in r.json()["error"]
    r = await client.post(f"{V3}/register", json={"username": "x", "password": "y", "inhibit_login": "yes"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON" and "inhibit_login" in r.json()["error"]
    r = await client.post(f"{V3}/login", content=b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}')
    assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    r = await client.get(f"{V3}/account/whoami")
    assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
    r = await client.get(f"{V3}/account/whoami", headers=auth_header("nonsense"))
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    assert r.json()["soft_logout"] is False
    r = await client.get(f"{V3}/account/whoami", params={"access_token": "nonsense"})
    assert r.status_code == 401 and r.json()["errcode"] == "M_UNKNOWN_TOKEN"
    r = await client.post(f"{V3}/refresh", json={})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
    r = await client.get(f"{V3}/register/available")
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"


async def test_cors_and_preflight(client: httpx.AsyncClient) -> None:
    r = await client.options(f"{V3}/login", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = await client.options("/_matrix/client/v3/unknown/endpoint")
    assert r.status_code in (200, 204) and r.headers["Access-Control-Allow-Origin"] == "*"
    r = await client.get("/_matrix/client/versions")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    r = await client.get("/nothing-here")
    assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_discovery(client: httpx.AsyncClient, server: Any) -> None:
    r = await client.get("/_matrix/client/versions")
    versions = r.json()["versions"]
    assert "r0.6.1" in versions and "v1.19" in versions and "v1.1" in versions
    assert isinstance(r.json()["unstable_features"], dict)
    r = await client.get("/.well-known/matrix/client")
    assert r.json() == {"m.homeserver": {"base_url": server.base_url}}
    reg = await register(client, "cap")
    r = await client.get(f"{V3}/capabilities", headers=auth_header(reg["access_token"]))
    caps = r.json()["capabilities"]
    assert caps["m.room_versions"]["default"] == "12"
    assert set(caps["m.room_versions"]["available"]) == {str(n) for n in range(1, 13)}
    assert caps["m.change_password"] == {"enabled": True}
    r = await client.get(f"{V3}/login")
    assert {"type": "m.login.password"} in r.json()["flows"]


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    await client.get("/_matrix/client/versions")
    r = await client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'parley_http_requests_total{endpoint="/_matrix/client/versions",method="GET",status="200"}' in text
    assert "parley_http_request_duration_seconds_bucket" in text
    assert 'parley_db_pool_connections{state="in_use"}' in text
    assert r.headers.get("X-Request-Id")


async def test_health_reports_database_down(server_factory: Any) -> None:
    srv = await server_factory()
    async with srv.client() as c:
        assert (await c.get("/health")).status_code == 200
        await srv.services.db.pool.close()
        r = await c.get("/health")
        assert r.status_code == 503
