"""matrix-nio, a third-party client library, registers, logs in and asks whoami."""

from __future__ import annotations

from typing import Any

import nio


async def test_nio_register_login_whoami(server: Any, tmp_path: Any) -> None:
    client = nio.AsyncClient(server.base_url, "@nina:localhost", store_path=str(tmp_path))
    try:
        resp = await client.register("nina", "pa55word", device_name="nio")
        assert isinstance(resp, nio.RegisterResponse), resp
        assert resp.user_id == "@nina:localhost"
        await client.logout()
        resp = await client.login("pa55word", device_name="nio-login")
        assert isinstance(resp, nio.LoginResponse), resp
        who = await client.whoami()
        assert isinstance(who, nio.WhoamiResponse), who
        assert who.user_id == "@nina:localhost" and who.device_id == resp.device_id
    finally:
        await client.close()
