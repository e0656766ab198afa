"""Server-side key backup: versions, sessions, the replacement rules, etag and count, deletion."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import auth_header, register

V3 = "/_matrix/client/v3"
ALG = "m.megolm_backup.v1.curve25519-aes-sha2"


def key(fmi: int, fc: int, verified: bool, tag: str) -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ephemeral": tag, "ciphertext": f"ct-{tag}", "mac": "m"}}


async def test_key_backup_lifecycle(client: httpx.AsyncClient) -> None:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    h, bh = auth_header(alice["access_token"]), auth_header(bob["access_token"])

    r = await client.get(f"{V3}/room_keys/version", headers=h)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = await client.put(f"{V3}/room_keys/keys?version=1", headers=h, json={"rooms": {}})
    assert r.status_code == 404
    r = await client.post(f"{V3}/room_keys/version", headers=h, json={"algorithm": ALG})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"

    r = await client.post(f"{V3}/room_keys/version", headers=h, json={"algorithm": ALG, "auth_data": {"public_key": "pk1"}})
    assert r.status_code == 200
    v1 = r.json()["version"]
    info = (await client.get(f"{V3}/room_keys/version", headers=h)).json()
    assert info == {"version": v1, "algorithm": ALG, "auth_data": {"public_key": "pk1"}, "etag": info["etag"], "count": 0}
    # Bob has no backup; he cannot see Alice's.
    assert (await client.get(f"{V3}/room_keys/version/{v1}", headers=bh)).status_code == 404

    room = "!room:localhost"
    r = await client.put(f"{V3}/room_keys/keys?version={v1}", headers=h, json={"rooms": {
        room: {"sessions": {"s1": key(5, 1, False, "a"), "s2": key(0, 0, True, "b")}},
        "!other:localhost": {"sessions": {"s3": key(0, 0, False, "c")}},
    }})
    assert r.status_code == 200 and r.json()["count"] == 3
    etag1 = r.json()["etag"]
    assert etag1 != info["etag"]

    all_keys = (await client.get(f"{V3}/room_keys/keys", headers=h, params={"version": v1})).json()
    assert all_keys["rooms"][room]["sessions"]["s1"] == key(5, 1, False, "a")
    assert set(all_keys["rooms"]) == {room, "!other:localhost"}
    r = await client.get(f"{V3}/room_keys/keys/{room}", headers=h, params={"version": v1})
    assert set(r.json()["sessions"]) == {"s1", "s2"}
    r = await client.get(f"{V3}/room_keys/keys/!empty:localhost", headers=h, params={"version": v1})
    assert r.status_code == 200 and r.json() == {"sessions": {}}
    r = await client.get(f"{V3}/room_keys/keys/{room}/nope", headers=h, params={"version": v1})
    assert r.status_code == 404
    r = await client.get(f"{V3}/room_keys/keys", headers=h)
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"

    async def put_one(session: str, data: dict[str, Any]) -> dict[str, Any]:
        r = await client.put(f"{V3}/room_keys/keys/{room}/{session}", headers=h, params={"version": v1}, json=data)
        assert r.status_code == 200, r.text
        return r.json()

    async def stored(session: str) -> dict[str, Any]:
        r = await client.get(f"{V3}/room_keys/keys/{room}/{session}", headers=h, params={"version": v1})
        return r.json()

    # s1 is unverified, index 5, forwarded 1.
    res = await put_one("s1", key(7, 0, False, "worse-index"))       # higher index loses
    assert res["etag"] == etag1 and await stored("s1") == key(5, 1, False, "a")
    await put_one("s1", key(5, 1, False, "tie"))                        # a tie keeps the stored key
    assert await stored("s1") == key(5, 1, False, "a")
    await put_one("s1", key(5, 0, False, "fewer-forwards"))             # lower forwarded_count wins
    assert await stored("s1") == key(5, 0, False, "fewer-forwards")
    await put_one("s1", key(2, 3, False, "lower-index"))                # lower index wins
    assert await stored("s1") == key(2, 3, False, "lower-index")
    res = await put_one("s1", key(9, 9, True, "verified"))              # verified beats everything
    assert await stored("s1") == key(9, 9, True, "verified")
    assert res["etag"] != etag1 and res["count"] == 3
    await put_one("s2", key(0, 0, False, "unverified"))                 # unverified never replaces verified
    assert await stored("s2") == key(0, 0, True, "b")

    # Malformed key data.
    r = await client.put(f"{V3}/room_keys/keys/{room}/s9", headers=h, params={"version": v1},
                         json={"first_message_index": "0", "forwarded_count": 0, "is_verified": False,
                               "session_data": {}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"

    # Updating: only auth_data, same algorithm, same version.
    r = await client.put(f"{V3}/room_keys/version/{v1}", headers=h, json={"algorithm": ALG, "auth_data": {"public_key": "pk1b"}})
    assert r.status_code == 200
    r = await client.put(f"{V3}/room_keys/version/{v1}", headers=h, json={"algorithm": "other", "auth_data": {}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.put(f"{V3}/room_keys/version/{v1}", headers=h,
                         json={"algorithm": ALG, "auth_data": {}, "version": "999"})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
    r = await client.put(f"{V3}/room_keys/version/999", headers=h, json={"algorithm": ALG, "auth_data": {}})
    assert r.status_code == 404
    assert (await client.get(f"{V3}/room_keys/version/{v1}", headers=h)).json()["auth_data"] == {"public_key": "pk1b"}

    # A new version becomes current; writing to the old one is refused.
    r = await client.post(f"{V3}/room_keys/version", headers=h, json={"algorithm": ALG, "auth_data": {"public_key": "pk2"}})
    v2 = r.json()["version"]
    assert v2 != v1
    r = await client.put(f"{V3}/room_keys/keys/{room}/s1", headers=h, params={"version": v1}, json=key(0, 0, True, "x"))
    assert r.status_code == 403 and r.json() == {
        "errcode": "M_WRONG_ROOM_KEYS_VERSION", "error": "Wrong backup version.", "current_version": v2}
    # The old one can still be read.
    r = await client.get(f"{V3}/room_keys/keys", headers=h, params={"version": v1})
    assert len(r.json()["rooms"][room]["sessions"]) == 2

    # Deleting keys.
    r = await client.delete(f"{V3}/room_keys/keys/{room}/s1", headers=h, params={"version": v1})
    assert r.status_code == 200 and r.json()["count"] == 2
    r = await client.delete(f"{V3}/room_keys/keys/{room}", headers=h, params={"version": v1})
    assert r.json()["count"] == 1
    r = await client.delete(f"{V3}/room_keys/keys", headers=h, params={"version": v1})
    assert r.json()["count"] == 0

    # Deleting versions: the previous one becomes current again; deleting twice succeeds.
    assert (await client.delete(f"{V3}/room_keys/version/{v2}", headers=h)).status_code == 200
    assert (await client.get(f"{V3}/room_keys/version", headers=h)).json()["version"] == v1
    assert (await client.delete(f"{V3}/room_keys/version/{v2}", headers=h)).status_code == 200
    assert (await client.get(f"{V3}/room_keys/version/{v2}", headers=h)).status_code == 404
    assert (await client.delete(f"{V3}/room_keys/version/12345", headers=h)).status_code == 404
    assert (await client.delete(f"{V3}/room_keys/version/{v1}", headers=h)).status_code == 200
    assert (await client.get(f"{V3}/room_keys/version", headers=h)).status_code == 404
    # Versions are never reused.
    r = await client.post(f"{V3}/room_keys/version", headers=h, json={"algorithm": ALG, "auth_data": {}})
    assert r.json()["version"] not in (v1, v2)
